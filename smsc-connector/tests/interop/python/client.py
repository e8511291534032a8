"""A third-party ESME for the simulator's interoperability test: the PyPI
`smpplib` client binds to `tern smsc-sim`, is refused with a wrong
password, submits short and UDH-concatenated messages with
registered_delivery, and waits for a delivery receipt for every submit_sm,
checking that the receipt's TLVs and Appendix B text both name the id the
submit_sm_resp gave. Prints one JSON line; exits 0 only if all held."""

import argparse
import json
import re
import socket
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    result = {"refused_bad_password": False, "ids": [], "receipts": {}, "errors": []}

    bad = smpplib.client.Client(args.host, args.port, allow_unknown_opt_params=True)
    bad.connect()
    try:
        bad.bind_transceiver(system_id="tern", password="wrong")
    except smpplib.exceptions.PDUError as error:
        result["refused_bad_password"] = error.args[1] in (
            smpplib.consts.SMPP_ESME_RINVPASWD, smpplib.consts.SMPP_ESME_RBINDFAIL)
    finally:
        bad.disconnect()

    client = smpplib.client.Client(args.host, args.port, timeout=1, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: result["ids"].append(pdu.message_id.decode()))

    def received(pdu):
        if not pdu.esm_class & 0x04:
            return None
        text = pdu.short_message.decode("latin-1")
        found = re.search(r"id:(\S+)", text)
        tlv = pdu.receipted_message_id.decode() if pdu.receipted_message_id else None
        text_id = found.group(1) if found else None
        if tlv != text_id:
            result["errors"].append("receipt TLV id %r differs from text id %r" % (tlv, text_id))
        result["receipts"][tlv] = {"stat": re.search(r"stat:(\S+)", text).group(1), "state": pdu.message_state}
        return None

    client.set_message_received_handler(received)
    client.connect()
    client.bind_transceiver(system_id="tern", password="secret")

    submits = 0
    for destination, text in [
        ("447700900101", "Hello from smpplib"),
        ("447700900102", "Grüße aus Python"),
        ("447700900103", "A long message from smpplib that needs several parts. " * 4),
    ]:
        parts, coding, esm_class = smpplib.gsm.make_parts(text)
        for part in parts:
            client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr="PyClient",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr=destination,
                short_message=part,
                data_coding=coding,
                esm_class=esm_class,
                registered_delivery=True,
            )
            submits += 1

    deadline = time.time() + 30
    while time.time() < deadline and (len(result["ids"]) < submits or len(result["receipts"]) < submits):
        try:
            client.read_once()
        except socket.timeout:
            pass
    client.unbind()
    client.disconnect()

    result["submits"] = submits
    missing = [i for i in result["ids"] if i not in result["receipts"]]
    ok = (result["refused_bad_password"] and len(result["ids"]) == submits
          and not missing and not result["errors"]
          and all(r["stat"] == "DELIVRD" and r["state"] == 2 for r in result["receipts"].values()))
    result["missing"] = missing
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
