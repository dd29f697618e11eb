#!/usr/bin/env python3
"""A provider for an IPSO Temperature (3303) instance, in either of the two
kinds dmagent has (the contract: agent/src/provider/mod.rs):

- with --bus, a D-Bus service: it registers with the agent's control API
  (org.dmagent.Agent1.RegisterProvider), implements org.dmagent.Provider1
  and pushes with PushValues; it registers again whenever the agent comes
  back. `provider = "dbus"` in dmagent.toml. Needs dbus-python and
  PyGObject (Debian: python3-dbus, python3-gi);
- without, a command provider: dmagent starts it (`provider = [...]`) and
  speaks newline-delimited JSON with it on stdin and stdout.

It reads the temperature from the first of SENSOR_FILES that exists
(millidegrees, as Linux thermal zones give it) or, on a machine with none
or with PROVIDER_SIMULATE=1, steps a simulated reading, and pushes Sensor
Value (5700) with the Min and Max Measured Values (5601, 5602). Execute of
5605 resets Min and Max to a fresh reading; a get (a volatile 5700) takes
a fresh reading. Application Type (5750) is kept here; the value "exit"
makes the provider exit without answering (to show the agent's handling
of a provider that dies mid-request) and "refuse" is refused.

Usage: provider.py [--bus] [--instance N] [--interval SECONDS]
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
    """The readings and what a server wrote, whatever the transport."""

    def __init__(self):
        self.simulated = 0
        self.minimum = None
        self.maximum = None
        self.application_type = None
        self.lock = threading.Lock()

    def read(self):
        for path in SENSOR_FILES:
            if os.path.exists(path) and os.environ.get("PROVIDER_SIMULATE") != "1":
                with open(path) as f:
                    return int(f.read().strip()) / 1000.0
        value = SIMULATED[self.simulated % len(SIMULATED)]
        self.simulated += 1
        return value

    def reading(self, reset=False):
        with self.lock:
            value = self.read()
            if reset or self.minimum is None:
                self.minimum = self.maximum = value
            self.minimum = min(self.minimum, value)
            self.maximum = max(self.maximum, value)
            return {"5700": value, "5601": self.minimum, "5602": self.maximum}

    def set(self, values):
        """None when taken, else why not. All or nothing: checked first."""
        value = values.get("5750", self.application_type)
        if value == "exit":
            os._exit(0)
        if value == "refuse":
            return '"refuse" is not an application type'
        unknown = set(values) - {"5750"}
        if unknown:
            return f"{', '.join(sorted(unknown))}: not writable here"
        self.application_type = value
        return None

    def get(self, resources):
        values = self.reading()
        if self.application_type is not None:
            values["5750"] = self.application_type
        missing = [r for r in resources if r not in values]
        if missing:
            return None, f"{', '.join(missing)}: not served"
        return {r: values[r] for r in resources}, None


def command(sensor, instance, interval):
    lock = threading.Lock()

    def send(message):
        # The reader and the periodic pusher both write: one line at a time.
        with lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def push(reset=False):
        send({"op": "values", "instance": instance, "values": sensor.reading(reset=reset)})

    push()
    if interval > 0:
        def periodic():
            while True:
                time.sleep(interval)
                push()
        threading.Thread(target=periodic, daemon=True).start()

    # One request per line, read as it comes.
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"id": request["id"], "ok": True}
        op = request["op"]
        if op == "execute" and request["resource"] == 5605:
            push(reset=True)
        elif op == "set" and request["instance"] == instance:
            why = sensor.set(request["values"])
            if why:
                answer = {"id": request["id"], "error": why}
        elif op == "get" and request["instance"] == instance:
            values, why = sensor.get(request["resources"])
            answer = {"id": request["id"], "error": why} if why else dict(answer, values=values)
        else:
            answer = {"id": request["id"], "error": f"instance {instance} is the only one"}
        send(answer)


def bus(sensor, instance, interval):
    import dbus
    import dbus.service
    from dbus.mainloop.glib import DBusGMainLoop
    from gi.repository import GLib

    AGENT, AGENT_PATH = "org.dmagent.Agent1", "/org/dmagent/Agent1"
    PATH = "/org/dmagent/example/Temperature"
    OBJECT = "/3303"

    class Refused(dbus.DBusException):
        _dbus_error_name = "org.dmagent.Provider1.Error.Refused"

    def variants(values):
        return {k: dbus.Double(v) if isinstance(v, float) else v for k, v in values.items()}

    DBusGMainLoop(set_as_default=True)
    # The agent's rule: the system bus as root, the session bus otherwise.
    which = os.environ.get("DMAGENT_BUS") or ("system" if os.geteuid() == 0 else "session")
    connection = dbus.SystemBus() if which == "system" else dbus.SessionBus()
    agent = {"iface": None}

    def push(reset=False):
        if agent["iface"] is None:
            return
        try:
            agent["iface"].PushValues(
                OBJECT, dbus.UInt32(instance), variants(sensor.reading(reset=reset)),
                signature="sua{sv}")
        except dbus.DBusException as e:
            print(f"provider: push refused: {e}", file=sys.stderr)

    class Provider(dbus.service.Object):
        @dbus.service.method("org.dmagent.Provider1", in_signature="ua{sv}")
        def Set(self, requested, values):
            if requested != instance:
                raise Refused(f"instance {instance} is the only one")
            why = sensor.set({str(k): str(v) for k, v in values.items()})
            if why:
                raise Refused(why)

        @dbus.service.method("org.dmagent.Provider1", in_signature="ua{sv}")
        def Add(self, requested, values):
            raise Refused(f"instance {instance} is the only one")

        @dbus.service.method("org.dmagent.Provider1", in_signature="u")
        def Delete(self, requested):
            raise Refused(f"instance {instance} is the only one")

        @dbus.service.method("org.dmagent.Provider1", in_signature="uus")
        def Execute(self, requested, resource, arguments):
            if requested == instance and resource == 5605:
                # After the answer: the push is a call of its own.
                GLib.idle_add(lambda: push(reset=True) and False)

        @dbus.service.method("org.dmagent.Provider1", in_signature="uas", out_signature="a{sv}")
        def Get(self, requested, resources):
            if requested != instance:
                raise Refused(f"instance {instance} is the only one")
            values, why = sensor.get([str(r) for r in resources])
            if why:
                raise Refused(why)
            return variants(values)

    Provider(connection, PATH)

    def agent_owner(owner):
        # The agent came (or came back): register and push what we hold.
        if not owner:
            agent["iface"] = None
            return
        iface = dbus.Interface(connection.get_object(AGENT, AGENT_PATH), AGENT)
        try:
            iface.RegisterProvider(OBJECT, dbus.ObjectPath(PATH))
        except dbus.DBusException as e:
            sys.exit(f"provider: the agent refused the registration: {e}")
        agent["iface"] = iface
        push()
        # For whoever started it (a test waits for this line).
        print("registered", flush=True)

    connection.watch_name_owner(AGENT, agent_owner)
    if interval > 0:
        GLib.timeout_add(int(interval * 1000), lambda: push() or True)
    GLib.MainLoop().run()


def main():
    interval = 60.0
    instance = 0
    on_bus = False
    args = sys.argv[1:]
    while args:
        if args[0] == "--bus":
            on_bus = True
            args = args[1:]
            continue
        if len(args) < 2:
            sys.exit(f"{args[0]}: needs a value")
        if args[0] == "--interval":
            interval = float(args[1])
        elif args[0] == "--instance":
            instance = int(args[1])
        else:
            sys.exit(f"unknown option {args[0]}")
        args = args[2:]
    (bus if on_bus else command)(Sensor(), instance, interval)


if __name__ == "__main__":
    main()
