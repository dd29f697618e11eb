#!/usr/bin/env python3
"""An AT-command responder that oFono's phonesim plugin takes for a modem.

Test peer only: listens on 127.0.0.1:PORT inside the test's network
namespace, answers the commands oFono sends while it brings a modem up
(SIM ready, registered on a fake network, one packet-data context), and
says OK to anything else. A control connection on PORT+1 takes lines to
change what the network reports while oFono runs:

    cell LAC CI     -> unsolicited +CREG/+CGREG with the new cell (hex)
    csq N           -> the signal quality the next AT+CSQ returns

Environment: PORT (default 12345).
"""

import asyncio
import os

PORT = int(os.environ.get("PORT", "12345"))
STATE = {"csq": 20, "lac": "00C3", "ci": "0000A1B2", "mccmnc": "24405",
         "imsi": "244051234567890", "cops_format": 0}
MODEMS = []


def answer(command):
    """The lines for one command, and whether it succeeds."""
    c = command.upper()
    s = STATE
    if c.startswith("AT+COPS=3,"):
        s["cops_format"] = int(c.split(",")[1])
        return [], True
    if c == "AT+COPS?":
        if s["cops_format"] == 2:
            return ['+COPS: 0,2,"%s",2' % s["mccmnc"]], True
        return ['+COPS: 0,0,"FakeNet",2'], True
    fixed = {
        "AT+SIMSTATE?": ["+SIMSTATE: 1"],
        "AT+CPIN?": ["+CPIN: READY"],
        "AT+CIMI": [s["imsi"]],
        "AT+CGMI": ["dmagent-test"],
        "AT+CGMM": ["phonesim-responder"],
        "AT+CGMR": ["1.0"],
        "AT+CGSN": ["350000000000001"],
        "AT+CREG=?": ["+CREG: (0-2)"],
        "AT+CGREG=?": ["+CGREG: (0-2)"],
        "AT+CGATT?": ["+CGATT: 1"],
        "AT+CFUN?": ["+CFUN: 1"],
        "AT+CBC": ["+CBC: 0,80"],
        'AT+CLCK="SC",2': ["+CLCK: 0"],
        "AT+COPS=?": ['+COPS: (2,"FakeNet","FakeNet","%s",2)' % s["mccmnc"]],
        "AT+CGDCONT=?": ['+CGDCONT: (1-4),"IP",,,(0-2),(0-4)',
                         '+CGDCONT: (1-4),"IPV6",,,(0-2),(0-4)'],
    }
    if c in fixed:
        return fixed[c], True
    if c == "AT+CREG?":
        return ['+CREG: 2,1,"%s","%s",2' % (s["lac"], s["ci"])], True
    if c == "AT+CGREG?":
        return ['+CGREG: 2,1,"%s","%s",2' % (s["lac"], s["ci"])], True
    if c == "AT+CSQ":
        return ["+CSQ: %d,99" % s["csq"]], True
    if c.startswith("AT+CRSM="):
        # Every SIM elementary file is absent: oFono goes on without them.
        return ["+CRSM: 106,130"], True
    # Refused, so oFono falls back to what the table answers.
    for refused in ("AT+CIND=?", "AT+CPINR", "AT+CPBS=?", "AT+CUSD", "AT+PTTY", "AT+CSMS=?"):
        if c.startswith(refused):
            return [], False
    return [], True


async def modem(reader, writer):
    MODEMS.append(writer)
    pending = b""
    try:
        while data := await reader.read(1024):
            pending += data
            while b"\r" in pending:
                line, pending = pending.split(b"\r", 1)
                command = line.strip(b"\n ").decode(errors="replace")
                if not command:
                    continue
                lines, ok = answer(command)
                out = "".join("\r\n%s\r\n" % l for l in lines)
                out += "\r\nOK\r\n" if ok else "\r\nERROR\r\n"
                writer.write(out.encode())
                await writer.drain()
    finally:
        MODEMS.remove(writer)
        writer.close()


async def control(reader, writer):
    while line := await reader.readline():
        words = line.decode().split()
        if words[:1] == ["cell"] and len(words) == 3:
            STATE["lac"], STATE["ci"] = words[1].upper(), words[2].upper()
            note = '\r\n+CREG: 1,"%s","%s",2\r\n' % (STATE["lac"], STATE["ci"])
            for m in MODEMS:
                m.write(note.encode())
                await m.drain()
        elif words[:1] == ["csq"] and len(words) == 2:
            STATE["csq"] = int(words[1])
        writer.write(b"ok\n")
        await writer.drain()
    writer.close()


async def main():
    modems = await asyncio.start_server(modem, "127.0.0.1", PORT)
    controls = await asyncio.start_server(control, "127.0.0.1", PORT + 1)
    print("phonesim responder on 127.0.0.1:%d, control on %d" % (PORT, PORT + 1), flush=True)
    async with modems, controls:
        await asyncio.gather(modems.serve_forever(), controls.serve_forever())


asyncio.run(main())
