//! The production backend: MongoDB replica sets.
//!
//! * The journal, the accept intents, accounts and the message index, and
//!   the contacts (opt-outs, conversations, inbound) and coordination
//!   (leases, settings) collections live on the deployment named by `uri`;
//!   the queue on `queue_uris` (several independent deployments, the
//!   Starling/Kestrel model) or on `uri`.
//! * Every write is `w: majority, j: true`; journal reads are
//!   `readConcern: majority`, so a reader never sees an event a failover
//!   could roll back.
//! * A standalone `mongod` is refused at start-up: Tern's guarantees need a
//!   replica set (majority writes, and transactions and change streams for
//!   the roles that use them).

mod accept;
mod accept_group;
mod billing;
mod contacts;
mod coordination;
mod journal;
mod queue;
mod records;
mod smsc;

use std::sync::Arc;
use std::time::Duration;

use bson::{Bson, Document, doc};
use mongodb::options::{Acknowledgment, ClientOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Database};

use self::accept::MongoAccept;
use self::contacts::MongoContacts;
use self::coordination::MongoCoordination;
use self::journal::MongoJournal;
use self::queue::{Deployment, MongoQueue};
use self::records::MongoRecords;
use self::smsc::MongoSmsc;
use crate::{
    Accounts, AppendThenFold, Contacts, Coordination, Journal, Messages, MongoConfig, Queue, QueueError, Result, Smsc,
    Store, StoreParts,
};

/// Queue, journal, accept, accounts, message index, contacts and
/// coordination on MongoDB.
#[derive(Debug, Clone)]
pub struct MongoStore {
    queue: Arc<MongoQueue>,
    journal: Arc<MongoJournal>,
    accept: Arc<MongoAccept>,
    records: Arc<MongoRecords>,
    contacts: Arc<MongoContacts>,
    coordination: Arc<MongoCoordination>,
    smsc: Arc<MongoSmsc>,
}

impl MongoStore {
    /// Connects to every configured deployment, checks each is a replica set
    /// (or a mongos), and creates the indexes Tern needs.
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        let main = open_database(&config.uri, &config.database, config).await?;
        let queue_uris =
            if config.queue_uris.is_empty() { vec![config.uri.clone()] } else { config.queue_uris.clone() };
        let mut deployments = Vec::with_capacity(queue_uris.len());
        for uri in &queue_uris {
            let db =
                if *uri == config.uri { main.clone() } else { open_database(uri, &config.database, config).await? };
            deployments.push(Deployment::new(redact(uri), db));
        }
        let queue = Arc::new(MongoQueue::new(deployments));
        queue.create_indexes().await?;
        let journal = Arc::new(MongoJournal::new(&main, config.journal_settle()));
        journal.create_indexes().await?;
        let records = Arc::new(MongoRecords::new(&main));
        records.create_indexes().await?;
        let accept =
            Arc::new(MongoAccept::new(&main, journal.clone(), queue.clone(), records.clone(), config.outbox_settle()));
        accept.create_indexes().await?;
        let contacts = Arc::new(MongoContacts::new(&main));
        contacts.create_indexes().await?;
        let coordination = Arc::new(MongoCoordination::new(&main));
        let smsc = Arc::new(MongoSmsc::new(&main));
        smsc.create_indexes().await?;
        Ok(Self { queue, journal, accept, records, contacts, coordination, smsc })
    }

    /// The store as the rest of Tern sees it.
    pub fn into_store(self) -> Store {
        let journal = Journal::new(self.journal);
        let messages = Messages::new(self.records.clone());
        let parts = StoreParts {
            queue: Queue::new(self.queue),
            recorder: Arc::new(AppendThenFold::new(journal.clone(), messages.clone())),
            journal,
            accept: Arc::new(accept_group::GroupedAccept::new(self.accept)),
            accounts: Accounts::new(self.records),
            messages,
            contacts: Contacts::new(self.contacts),
            coordination: Coordination::new(self.coordination),
            smsc: Smsc::new(self.smsc),
        };
        Store::new(parts, "mongodb")
    }
}

/// Connects and checks the server can give Tern its guarantees.
async fn open_database(uri: &str, database: &str, config: &MongoConfig) -> Result<Database> {
    let shown = redact(uri);
    let mut options =
        ClientOptions::parse(uri).await.map_err(|e| QueueError::Config(format!("invalid MongoDB URI {shown}: {e}")))?;
    let timeout = Duration::from_millis(config.server_selection_timeout_ms);
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.write_concern = Some(WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build());
    options.read_concern = Some(ReadConcern::majority());
    options.app_name.get_or_insert_with(|| "tern".to_owned());
    let client = Client::with_options(options)
        .map_err(|e| QueueError::Config(format!("cannot configure a MongoDB client for {shown}: {e}")))?;
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(|e| QueueError::Unavailable(format!("MongoDB at {shown} did not answer: {e}")))?;
    check_replica_set(&shown, &hello)?;
    Ok(client.database(database))
}

/// Refuses a standalone server: without a replica set there are no majority
/// writes, transactions or change streams, and Tern's durability promise
/// would be a lie.
fn check_replica_set(shown: &str, hello: &Document) -> Result<()> {
    let is_replica_set = matches!(hello.get("setName"), Some(Bson::String(name)) if !name.is_empty());
    let is_mongos = matches!(hello.get("msg"), Some(Bson::String(msg)) if msg == "isdbgrid");
    if is_replica_set || is_mongos {
        return Ok(());
    }
    Err(QueueError::Config(format!(
        "MongoDB at {shown} is a standalone server; Tern needs a replica set (majority-acknowledged writes, \
         transactions and change streams exist only there). Start mongod with --replSet and run rs.initiate(), \
         even for a single node."
    )))
}

/// The URI without its password, for messages.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &uri[..scheme], &uri[at + 1..]),
        _ => uri.to_owned(),
    }
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One document's failure in an insert_many.
struct WriteFailure {
    index: usize,
    code: i32,
    message: String,
}

/// The write errors of a failed insert_many, or the error itself if it was something else.
fn insert_many_write_errors(error: mongodb::error::Error) -> Result<Vec<WriteFailure>> {
    use mongodb::error::{ErrorKind, InsertManyError};
    match *error.kind {
        ErrorKind::InsertMany(InsertManyError {
            write_errors: Some(ref errors), write_concern_error: None, ..
        }) => Ok(errors
            .iter()
            .map(|e| WriteFailure { index: e.index, code: e.code, message: e.message.clone() })
            .collect()),
        _ => Err(error.into()),
    }
}

const DUPLICATE_KEY: i32 = 11000;

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        // findAndModify reports a duplicate as a command error.
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => {
            e.write_errors.as_ref().is_some_and(|errors| errors.iter().all(|e| e.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_server_is_refused_with_a_clear_error() {
        let standalone = doc! { "isWritablePrimary": true, "maxWireVersion": 21 };
        let err = check_replica_set("mongodb://db:27017/", &standalone).unwrap_err();
        assert!(err.to_string().contains("standalone server; Tern needs a replica set"), "{err}");
        assert!(check_replica_set("x", &doc! { "setName": "rs0" }).is_ok());
        assert!(check_replica_set("x", &doc! { "msg": "isdbgrid" }).is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_start_up_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = MongoConfig {
            server_selection_timeout_ms: 300,
            ..MongoConfig::new(format!("mongodb://127.0.0.1:{port}/"), "tern")
        };
        let err = MongoStore::connect(&config).await.unwrap_err();
        assert!(matches!(err, QueueError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains(&format!("MongoDB at mongodb://127.0.0.1:{port}/ did not answer")), "{err}");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("mongodb://tern:s3cret@db1:27017/?replicaSet=rs0"),
            "mongodb://***@db1:27017/?replicaSet=rs0"
        );
        assert_eq!(redact("mongodb://db1/"), "mongodb://db1/");
    }
}
