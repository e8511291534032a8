// A third-party SMSC for the connector's interoperability test: node-smpp
// (the `smpp` package) as the server. It binds transceivers with
// tern/secret, answers submit_sm with an id, sends a delivery receipt for
// each (both the TLVs and the Appendix B text), and sends an MO when the
// test writes {"mo": {"from": ..., "to": ..., "text": ...}} on stdin.
// Everything it sees is printed as one JSON object per line.
'use strict';

const readline = require('readline');
const smpp = require('smpp');

const report = (event) => process.stdout.write(JSON.stringify(event) + '\n');
let counter = 0;
let latest = null;

const server = smpp.createServer((session) => {
  session.on('error', (error) => report({ event: 'error', message: String(error) }));
  session.on('bind_transceiver', (pdu) => {
    if (pdu.system_id !== 'tern' || pdu.password !== 'secret') {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      report({ event: 'bind_refused', system_id: pdu.system_id });
      return;
    }
    session.send(pdu.response({ system_id: 'NodeSMSC' }));
    latest = session;
    report({ event: 'bound', system_id: pdu.system_id, interface_version: pdu.interface_version });
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
    report({ event: 'unbound' });
  });
  session.on('submit_sm', (pdu) => {
    counter += 1;
    const id = 'node' + counter;
    session.send(pdu.response({ message_id: id }));
    const message = pdu.short_message && pdu.short_message.message !== undefined
      ? pdu.short_message.message : pdu.short_message;
    report({
      event: 'submit_sm',
      id,
      source: pdu.source_addr,
      destination: pdu.destination_addr,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      udh: pdu.short_message && pdu.short_message.udh ? Buffer.from(pdu.short_message.udh[0] || []).toString('hex') : null,
      text: typeof message === 'string' ? message : null,
    });
    setTimeout(() => {
      session.deliver_sm({
        source_addr: pdu.destination_addr,
        destination_addr: pdu.source_addr,
        esm_class: 0x04,
        short_message: `id:${id} sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD err:000 text:`,
        receipted_message_id: id,
        message_state: 2,
      }, (resp) => report({ event: 'receipt_resp', id, status: resp.command_status }));
    }, 20);
  });
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const request = JSON.parse(line);
  if (!request.mo || !latest) {
    report({ event: 'mo_refused' });
    return;
  }
  latest.deliver_sm({
    source_addr_ton: 1,
    source_addr_npi: 1,
    source_addr: request.mo.from,
    destination_addr: request.mo.to,
    short_message: request.mo.text,
  }, (resp) => report({ event: 'mo_resp', status: resp.command_status }));
});

server.listen(0, '127.0.0.1', () => report({ event: 'listening', port: server.address().port }));
