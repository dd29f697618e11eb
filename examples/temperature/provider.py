#!/usr/bin/env python3
"""A command provider for an IPSO Temperature (3303) instance: dmagent
starts it (`provider = [...]` in dmagent.toml) and speaks newline-delimited
JSON with it on stdin and stdout (see agent/src/provider.rs).

It reads the temperature from the first of SENSOR_FILES that exists
(millidegrees, as Linux thermal zones give it) or, on a machine with none,
steps a simulated reading, and pushes Sensor Value (5700) with the Min and
Max Measured Values (5601, 5602). Execute of 5605 resets Min and Max to a
fresh reading. Application Type (5750) is kept here; the value "exit"
makes the provider exit without answering (to show the agent's handling
of a provider that dies mid-request) and "refuse" is refused.

Usage: provider.py [--instance N] [--interval SECONDS]
  --instance: the instance it serves (0 by default; a TR-181 table
    numbers from 1), --interval: how often it pushes a reading (0: only at
    start and on Execute; 60 by default).
"""

import json
import os
import sys
import threading
import time

SENSOR_FILES = ["/sys/class/thermal/thermal_zone0/temp"]
SIMULATED = [20.5, 25.0, 23.5]


class Sensor:
    def __init__(self):
        self.simulated = 0
        self.minimum = None
        self.maximum = None

    def read(self):
        for path in SENSOR_FILES:
            if os.path.exists(path) and os.environ.get("PROVIDER_SIMULATE") != "1":
                with open(path) as f:
                    return int(f.read().strip()) / 1000.0
        value = SIMULATED[self.simulated % len(SIMULATED)]
        self.simulated += 1
        return value

    def reading(self, reset=False):
        value = self.read()
        if reset or self.minimum is None:
            self.minimum = self.maximum = value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        return {"5700": value, "5601": self.minimum, "5602": self.maximum}


LOCK = threading.Lock()


def send(message):
    # The reader and the periodic pusher both write: one line at a time.
    with LOCK:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def main():
    interval = 60.0
    instance = 0
    args = sys.argv[1:]
    while len(args) >= 2:
        if args[0] == "--interval":
            interval = float(args[1])
        elif args[0] == "--instance":
            instance = int(args[1])
        else:
            sys.exit(f"unknown option {args[0]}")
        args = args[2:]
    sensor = Sensor()
    readings = threading.Lock()

    def push(reset=False):
        with readings:
            values = sensor.reading(reset=reset)
        send({"op": "values", "instance": instance, "values": values})

    push()
    if interval > 0:
        def periodic():
            while True:
                time.sleep(interval)
                push()
        threading.Thread(target=periodic, daemon=True).start()

    application_type = None  # what a server wrote to 5750
    # One request per line, read as it comes (no buffering between a
    # readiness check and the read).
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"id": request["id"], "ok": True}
        if request["op"] == "execute" and request["resource"] == 5605:
            push(reset=True)
        elif request["op"] == "set" and request["instance"] == instance:
            value = request["values"].get("5750")
            if value == "exit":
                return
            if value == "refuse":
                answer = {"id": request["id"], "error": "\"refuse\" is not an application type"}
            else:
                application_type = value
        elif request["op"] in ("add", "delete"):
            answer = {"id": request["id"], "error": f"instance {instance} is the only one"}
        send(answer)


if __name__ == "__main__":
    main()
