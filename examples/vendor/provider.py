#!/usr/bin/env python3
"""A command provider for the vendor object Device.X_000000_Example.
(example.xml): dmagent starts it (`provider = [...]` in dmagent.toml) and
speaks newline-delimited JSON with it on stdin and stdout (the contract:
agent/src/provider/mod.rs). TR-181 objects are keyed by parameter name.

It keeps Greeting (writable; the text "refuse" is refused) and counts
Changes, the number of times Greeting was set since it started. Changes is
volatile (`volatile = ["Changes"]`): the agent asks for it ("get") when a
request reads it, rather than this provider pushing it. The command
Reset() (a USP controller's Operate) comes as an "execute" with its inputs;
it sets Greeting and pushes the new value.
"""

import json
import sys


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    greeting = "hello"
    changes = 0
    send({"op": "values", "instance": 0, "values": {"Greeting": greeting}})
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
        elif request["op"] == "execute" and request["resource"] == "Reset()":
            # The agent does not wait for it: the new value is pushed.
            greeting = request.get("inputs", {}).get("Greeting", "hello")
            send({"op": "values", "instance": 0, "values": {"Greeting": greeting}})
        elif request["op"] == "get":
            held = {"Greeting": greeting, "Changes": changes}
            answer["values"] = {name: held[name] for name in request["resources"] if name in held}
        else:
            answer = {"id": request["id"], "error": f"{request['op']} is not served"}
        send(answer)


if __name__ == "__main__":
    main()
