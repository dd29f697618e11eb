#!/usr/bin/env python3
"""A command provider for the vendor object Device.X_000000_Example.
(example.xml): dmagent starts it (`provider = [...]` in dmagent.toml) and
speaks newline-delimited JSON with it on stdin and stdout (see
agent/src/provider.rs). TR-181 objects are keyed by parameter name.

It keeps Greeting (writable; the text "refuse" is refused) and pushes
Changes, the number of times Greeting was set since it started.
"""

import json
import sys


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    greeting = "hello"
    changes = 0
    send({"op": "values", "instance": 0, "values": {"Greeting": greeting, "Changes": changes}})
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"id": request["id"], "ok": True}
        if request["op"] == "set":
            value = request["values"].get("Greeting", greeting)
            if value == "refuse":
                answer = {"id": request["id"], "error": "not a greeting"}
            else:
                greeting = value
                changes += 1
                send({"op": "values", "instance": 0, "values": {"Changes": changes}})
        else:
            answer = {"id": request["id"], "error": f"{request['op']} is not served"}
        send(answer)


if __name__ == "__main__":
    main()
