//! Batch body templates: `{name}` is replaced by the recipient's variable
//! `name`; `{{` and `}}` are literal braces.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses; the error says what is wrong and where.
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("body is empty".into());
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, c)) if c.is_alphanumeric() || c == '_' || c == '-' => name.push(c),
                            Some((_, c)) => {
                                return Err(format!(
                                    "placeholder at character {at} contains {c:?}; names are letters, digits, _ and -"
                                ));
                            }
                            None => return Err(format!("placeholder at character {at} is not closed with }}")),
                        }
                    }
                    if name.is_empty() {
                        return Err(format!("placeholder at character {at} has no name"));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Variable(name));
                }
                '}' => return Err(format!("unmatched }} at character {at}; write }}}} for a literal brace")),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self { parts })
    }

    /// The text for one recipient, or the name of a variable it lacks.
    pub fn render(&self, variables: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Variable(name) => out.push_str(variables.get(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_variables_and_escaped_braces() {
        let t = Template::parse("Hi {name}, code {{{code}}} }}").unwrap();
        let vars = [("name".to_string(), "Ann".to_string()), ("code".to_string(), "42".to_string())].into();
        assert_eq!(t.render(&vars).unwrap(), "Hi Ann, code {42} }");
        assert_eq!(t.render(&BTreeMap::new()).unwrap_err(), "name");
    }

    #[test]
    fn bad_templates_say_where() {
        assert!(Template::parse("Hi {name").unwrap_err().contains("not closed"));
        assert!(Template::parse("Hi {}").unwrap_err().contains("no name"));
        assert!(Template::parse("Hi }").unwrap_err().contains("unmatched"));
        assert!(Template::parse("Hi {a b}").unwrap_err().contains("contains"));
    }
}
