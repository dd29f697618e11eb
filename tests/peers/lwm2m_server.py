"""A small LwM2M server on aiocoap, for dmagent's end-to-end test.

Usage: lwm2m_server.py PORT
       lwm2m_server.py PORT write PATH VALUE   (stdin: a line to write, then read/exec/write/observe lines)
       lwm2m_server.py PORT bootstrap BOOTSTRAP_PORT [SECOND_PORT]
       lwm2m_server.py PORT bootstrap-certificate BOOTSTRAP_PORT URI CERT KEY SERVER_CERT WRONG_KEY [SNI]
       lwm2m_server.py PORT platform APN_PATH
       lwm2m_server.py PORT reboot
       lwm2m_server.py PORT concurrent   (stdin: "create SSID" and "read PATH" lines)
       lwm2m_server.py PORT host-action PATH MARKER
       lwm2m_server.py PORT observe PATH
       lwm2m_server.py PORT firmware SIZE
       lwm2m_server.py PORT firmware-pull BAD_URL GOOD_URL
       lwm2m_server.py PORT firmware-full SIZE
       lwm2m_server.py PORT firmware-coap SIZE
       lwm2m_server.py PORT software URL [wait]   (wait: a stdin line before it starts)
       lwm2m_server.py PORT self-update URL
       lwm2m_server.py PORT idle
       lwm2m_server.py PORT psk IDENTITY KEY_HEX

Listens on 127.0.0.1:PORT and accepts one registration. Then, by default,
drives the registered client through Read (text, TLV, SenML JSON), Write,
Observe, Execute, Create, Delete and Discover; with `write`, waits for a
line on stdin and writes VALUE (text/plain) to PATH. Every step is printed
on stdout as one JSON object, so the Rust tests assert on data, not on log
text. With `bootstrap`, a bootstrap server on BOOTSTRAP_PORT first answers
the client's Bootstrap-Request, deletes everything, writes a Security and a
Server instance pointing at PORT (and, with SECOND_PORT, a second account
for a second server there), and finishes; the client then registers with
each. Register and de-register events name the port they came to. Exits
after the client de-registers (from every server). With `host-action`,
executes PATH (/3/0/4 Reboot, /3/0/5 Factory Reset) and, when the
de-register comes, says whether the file MARKER (which the host action's
command creates) existed yet. With `concurrent`, each stdin line starts
a request without waiting for the one before: "create SSID" creates a
/12 instance with that SSID (step "create"), "read PATH" reads PATH as
text (step "read"). With `bootstrap-certificate`, the bootstrap server
provisions a Security Mode 2 account for the coaps:// URI (another
server) from PEM files, its certificate usage 2: first with WRONG_KEY
(Finish must be refused, step "bootstrap-finish-wrong-key"), then with
KEY (step "bootstrap-finish"), and with SNI as /0/x/14 when given; it
serves until killed. With `psk`, the server is coaps:// over tinydtls
(aiocoap's DTLSSocket transport), accepting IDENTITY with KEY_HEX; it
reads /3/0/0 over the client's DTLS session (step "read") and waits for
the de-register.
"""

import asyncio
import json
import os
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap import Code, Message


def say(**fields):
    print(json.dumps(fields), flush=True)


class State:
    def __init__(self, port):
        self.port = port
        self.registered = asyncio.get_event_loop().create_future()
        self.deregistered = asyncio.get_event_loop().create_future()
        # A file the host action creates: its existence at De-register
        # time tells which came first.
        self.marker = None
        self.remote = None


class Directory(resource.Resource):
    def __init__(self, state):
        super().__init__()
        self.state = state

    async def render_post(self, request):
        query = dict(q.split("=", 1) for q in request.opt.uri_query if "=" in q)
        say(event="register", query=query, links=request.payload.decode(),
            content_format=int(request.opt.content_format or 0), port=self.state.port)
        if not self.state.registered.done():
            # The remote itself: a DTLS session's address is no URI.
            self.state.remote = request.remote
            self.state.registered.set_result(request.remote.hostinfo)
        return Message(code=Code.CREATED, location_path=("rd", "1"))


class Registration(resource.Resource):
    def __init__(self, state):
        super().__init__()
        self.state = state

    async def render_post(self, request):
        say(event="update")
        return Message(code=Code.CHANGED)

    async def render_delete(self, request):
        if self.state.marker:
            say(event="deregister", port=self.state.port,
                action_done=os.path.exists(self.state.marker))
        else:
            say(event="deregister", port=self.state.port)
        if not self.state.deregistered.done():
            self.state.deregistered.set_result(True)
        return Message(code=Code.DELETED)


async def call(context, name, code, uri, payload=b"", accept=None, content_format=None):
    message = Message(code=code, uri=uri, payload=payload)
    if accept is not None:
        message.opt.accept = accept
    if content_format is not None:
        message.opt.content_format = content_format
    response = await context.request(message).response
    say(step=name, code=str(response.code), payload=response.payload.hex(),
        text=response.payload.decode("utf-8", "replace"),
        content_format=int(response.opt.content_format) if response.opt.content_format is not None else None,
        location=list(response.opt.location_path))
    return response


async def write_on_signal(context, base, path, value):
    """Writes VALUE to PATH on the first stdin line; then each line "read
    PATH" reads PATH (text/plain) and prints it as step "read", each
    line "exec PATH" executes PATH and prints it as step "exec", each line
    "write PATH VALUE" writes VALUE (text/plain) as step "write", "push
    SIZE" pushes a firmware package of SIZE bytes to /5/0/0, and a
    line "observe PATH" observes PATH (text/plain): the first answer as
    step "observe", then each notification as step "notification"."""
    loop = asyncio.get_event_loop()
    lines = asyncio.Queue()

    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)

    # A daemon thread: it never holds up the exit.
    import threading
    threading.Thread(target=reader, daemon=True).start()
    await lines.get()
    await call(context, "write", Code.PUT, base + path, payload=value.encode(), content_format=0)
    while True:
        words = (await lines.get()).split()
        if len(words) == 2 and words[0] == "read":
            await call(context, "read", Code.GET, base + words[1], accept=0)
        elif len(words) == 2 and words[0] == "exec":
            await call(context, "exec", Code.POST, base + words[1])
        elif len(words) == 2 and words[0] == "push":
            # A firmware package of SIZE bytes pushed to /5/0/0 (aiocoap
            # cuts it into Block1 blocks).
            await call(context, "push", Code.PUT, base + "/5/0/0",
                       payload=make_package(int(words[1])), content_format=42)
        elif len(words) == 3 and words[0] == "write":
            await call(context, "write", Code.PUT, base + words[1], payload=words[2].encode(),
                       content_format=0)
        elif len(words) == 2 and words[0] == "observe":
            message = Message(code=Code.GET, uri=base + words[1], observe=0)
            message.opt.accept = 0
            observation = context.request(message)
            first = await observation.response
            say(step="observe", code=str(first.code), text=first.payload.decode(errors="replace"))

            async def notifications(observation):
                try:
                    async for notification in observation.observation:
                        say(step="notification",
                            text=notification.payload.decode(errors="replace"))
                except aiocoap.error.LibraryShutdown:
                    pass  # the server is stopping

            asyncio.ensure_future(notifications(observation))


async def concurrent(context, base):
    """Each stdin line starts its request at once; answers are printed in
    the order they come."""
    loop = asyncio.get_event_loop()
    lines = asyncio.Queue()

    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)

    import threading
    threading.Thread(target=reader, daemon=True).start()
    running = set()
    while True:
        words = (await lines.get()).split()
        if len(words) == 2 and words[0] == "create":
            request = call(context, "create", Code.POST, base + "/12",
                           payload=tlv(5, words[1].encode()), content_format=11542)
        elif len(words) == 2 and words[0] == "read":
            request = call(context, "read", Code.GET, base + words[1], accept=0)
        else:
            continue
        task = asyncio.ensure_future(request)
        running.add(task)
        task.add_done_callback(running.discard)


def tlv(resource, value):
    """One OMA-TLV resource entry (LwM2M Core 7.4.3), for values < 64 KiB."""
    if len(value) < 8:
        return bytes([0xC0 | len(value), resource]) + value
    if len(value) < 256:
        return bytes([0xC8, resource, len(value)]) + value
    return bytes([0xD0, resource]) + len(value).to_bytes(2, "big") + value


def pem_der(path):
    """The DER of every PEM block in a file, one after another."""
    import base64
    der, body = b"", None
    for line in open(path):
        line = line.strip()
        if line.startswith("-----BEGIN"):
            body = ""
        elif line.startswith("-----END"):
            der += base64.b64decode(body)
            body = None
        elif body is not None:
            body += line
    return der


async def bootstrap_server(bootstrap_port):
    """A bootstrap server on BOOTSTRAP_PORT, once the client asked: its
    context and the client's base URI."""
    started = asyncio.get_event_loop().create_future()
    site = resource.Site()
    site.add_resource(["bs"], BootstrapRequest(started))
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", bootstrap_port), transports=UDP_ONLY)
    say(event="bootstrap-listening", port=bootstrap_port)
    base = "coap://" + await started
    return context, base


async def bootstrap_certificate(bootstrap_port, uri, cert, key, server_cert, wrong_key, sni=None):
    context, base = await bootstrap_server(bootstrap_port)
    await call(context, "bootstrap-delete", Code.DELETE, base + "/")
    server = tlv(0, b"\x00\xca") + tlv(1, b"\x78") + tlv(6, b"\x01") + tlv(7, b"U")
    await call(context, "bootstrap-write-server", Code.PUT, base + "/1/1", payload=server,
               content_format=11542)
    for name, secret in (("bootstrap-finish-wrong-key", wrong_key), ("bootstrap-finish", key)):
        security = (tlv(0, uri.encode()) + tlv(1, b"\x00") + tlv(2, b"\x02")
                    + tlv(3, pem_der(cert)) + tlv(4, pem_der(server_cert))
                    + tlv(5, pem_der(secret)) + tlv(10, b"\x00\xca") + tlv(15, b"\x02")
                    + (tlv(14, sni.encode()) if sni else b""))
        await call(context, "bootstrap-write-security", Code.PUT, base + "/0/1",
                   payload=security, content_format=11542)
        await call(context, name, Code.POST, base + "/bs")
    return context


class BootstrapRequest(resource.Resource):
    def __init__(self, started):
        super().__init__()
        self.started = started

    async def render_post(self, request):
        query = dict(q.split("=", 1) for q in request.opt.uri_query if "=" in q)
        say(event="bootstrap-request", query=query)
        if not self.started.done():
            self.started.set_result(request.remote.hostinfo)
        return Message(code=Code.CHANGED)


async def bootstrap(bootstrap_port, port, second_port=None):
    context, base = await bootstrap_server(bootstrap_port)
    await call(context, "bootstrap-delete", Code.DELETE, base + "/")
    security = (tlv(0, ("coap://127.0.0.1:%d" % port).encode()) + tlv(1, b"\x00") + tlv(2, b"\x03")
                + tlv(10, b"\x00\xca"))
    await call(context, "bootstrap-write-security", Code.PUT, base + "/0/1", payload=security,
               content_format=11542)
    server = tlv(0, b"\x00\xca") + tlv(1, b"\x78") + tlv(6, b"\x01") + tlv(7, b"U")
    await call(context, "bootstrap-write-server", Code.PUT, base + "/1/1", payload=server,
               content_format=11542)
    if second_port is not None:
        security = (tlv(0, ("coap://127.0.0.1:%d" % second_port).encode()) + tlv(1, b"\x00")
                    + tlv(2, b"\x03") + tlv(10, b"\x01\x2f"))
        await call(context, "bootstrap-write-security-2", Code.PUT, base + "/0/2",
                   payload=security, content_format=11542)
        server = tlv(0, b"\x01\x2f") + tlv(1, b"\x78") + tlv(6, b"\x01") + tlv(7, b"U")
        await call(context, "bootstrap-write-server-2", Code.PUT, base + "/1/2", payload=server,
                   content_format=11542)
    await call(context, "bootstrap-discover", Code.GET, base + "/", accept=40)
    await call(context, "bootstrap-finish", Code.POST, base + "/bs")
    return context


class Image(resource.Resource):
    """A firmware package for CoAP pull; aiocoap answers in Block2 blocks."""

    def __init__(self, payload):
        super().__init__()
        self.payload = payload
        self.gets = 0

    async def render_get(self, request):
        self.gets += 1
        return Message(payload=self.payload, content_format=42)


# CoAP over UDP only: aiocoap's default also binds TCP (and TLS) on the
# same port number, which the test picked free for UDP only; a TCP socket
# of another test there made the server fail to start.
UDP_ONLY = ["udp6"]


def make_package(size):
    return bytes(range(256)) * (size // 256)


async def registration_server(port, extra=()):
    state = State(port)
    root = resource.Site()
    for path, child in extra:
        root.add_resource(path, child)
    root.add_resource(["rd"], Directory(state))
    root.add_resource(["rd", "1"], Registration(state))
    # LWM2M_BIND=::1 serves on IPv6 loopback instead.
    host = os.environ.get("LWM2M_BIND", "127.0.0.1")
    context = await aiocoap.Context.create_server_context(
        root, bind=(host, port), transports=UDP_ONLY)
    say(event="listening", port=port)
    return state, context


async def psk_server(port, identity, key):
    """The registration server over coaps:// on tinydtls (aiocoap's
    tinydtls_server transport, on DTLSSocket), accepting IDENTITY with KEY
    (hex); reads /3/0/0 over the client's session."""
    from aiocoap.transports import tinydtls_server

    # aiocoap 0.4.17's DTLS server takes only plain addresses for its own,
    # so a request to a client that came over DTLS found no interface
    # (NoRequestInterface): its sessions' addresses are its own too.
    async def recognize_remote(self, remote):
        return (isinstance(remote, tinydtls_server._AddressDTLS)
                and remote._underlying_address.serversocket is self._pool)

    tinydtls_server.MessageInterfaceTinyDTLSServer.recognize_remote = recognize_remote
    state = State(port)
    root = resource.Site()
    root.add_resource(["rd"], Directory(state))
    root.add_resource(["rd", "1"], Registration(state))
    # aiocoap moves a coaps server's port up by one (5683 gives 5684).
    context = await aiocoap.Context.create_server_context(
        root, bind=("127.0.0.1", port - 1), transports=["tinydtls_server"])
    context.server_credentials.load_from_dict({
        ":client": {"dtls": {"psk": {"hex": key}, "client-identity": {"ascii": identity}}}})
    say(event="listening", port=port)
    await state.registered
    read = Message(code=Code.GET, uri_path=("3", "0", "0"))
    read.remote = state.remote
    response = await context.request(read).response
    say(step="read", code=str(response.code), text=response.payload.decode(errors="replace"))
    await asyncio.wait_for(state.deregistered, timeout=120)
    await context.shutdown()


async def main(port, mode):
    if mode and mode[0] == "psk":
        await psk_server(port, mode[1], mode[2])
        return
    image = None
    if mode and mode[0] == "firmware-coap":
        image = Image(make_package(int(mode[1])))
    state, context = await registration_server(port, [(["fw", "image.bin"], image)] if image else ())
    if mode and mode[0] == "bootstrap-certificate":
        bootstrap_context = await bootstrap_certificate(int(mode[1]), *mode[2:8])
        await asyncio.get_event_loop().create_future()
    if mode and mode[0] == "bootstrap":
        second = None
        if len(mode) > 2:
            second = await registration_server(int(mode[2]))
        bootstrap_context = await bootstrap(int(mode[1]), port,
                                            int(mode[2]) if second else None)
        await state.registered
        await asyncio.wait_for(state.deregistered, timeout=120)
        if second:
            await asyncio.wait_for(second[0].deregistered, timeout=120)
            await second[1].shutdown()
        await bootstrap_context.shutdown()
        await context.shutdown()
        return
    client = await state.registered
    base = "coap://" + client

    if mode and mode[0] == "idle":
        # Registered and left alone (Updates answered) until the client
        # de-registers: the footprint benchmark's server.
        await state.deregistered
        await context.shutdown()
        return

    if mode and mode[0] == "observe":
        # Observes PATH and reports each notification until the client
        # de-registers.
        observation = context.request(Message(code=Code.GET, uri=base + mode[1], observe=0))
        first = await observation.response
        say(step="observe", code=str(first.code), text=first.payload.decode(errors="replace"))

        async def notifications():
            async for notification in observation.observation:
                say(event="notification", text=notification.payload.decode(errors="replace"))

        watcher = asyncio.ensure_future(notifications())
        await asyncio.wait_for(state.deregistered, timeout=120)
        watcher.cancel()
        await context.shutdown()
        return

    if mode and mode[0] == "firmware":
        # Push delivery (LwM2M Core E.6): observe the Update Result, push
        # the package (aiocoap splits it into Block1 blocks), check the
        # state, execute Update, and report the result it notifies.
        result = context.request(Message(code=Code.GET, uri=base + "/5/0/5", observe=0))
        first = await result.response
        say(step="result-before", text=first.payload.decode())
        package = bytes(range(256)) * (int(mode[1]) // 256)
        await call(context, "push", Code.PUT, base + "/5/0/0", payload=package, content_format=42)
        await call(context, "state-after-push", Code.GET, base + "/5/0/3")
        await call(context, "update", Code.POST, base + "/5/0/2")
        async for notification in result.observation:
            text = notification.payload.decode()
            if text in ("1", "8"):
                say(step="result-after", text=text)
                break
        await call(context, "state-after-update", Code.GET, base + "/5/0/3")
        say(event="checks-done")
        await asyncio.wait_for(state.deregistered, timeout=120)
        await context.shutdown()
        return

    if mode and mode[0] == "firmware-full":
        # A push that cannot fit: the client refuses it and says why.
        result = context.request(Message(code=Code.GET, uri=base + "/5/0/5", observe=0))
        await result.response
        package = bytes(range(256)) * (int(mode[1]) // 256)
        await call(context, "push", Code.PUT, base + "/5/0/0", payload=package, content_format=42)
        async for notification in result.observation:
            if notification.payload.decode() == "2":
                say(step="result", text="2")
                break
        await call(context, "state", Code.GET, base + "/5/0/3")
        say(event="checks-done")
        await asyncio.wait_for(state.deregistered, timeout=120)
        await context.shutdown()
        return

    if mode and mode[0] == "firmware-coap":
        # Pull delivery over CoAP Block2 from this server's own /fw/image.bin
        # (as Leshan and Wakaama serve packages), then Update.
        states = context.request(Message(code=Code.GET, uri=base + "/5/0/3", observe=0))
        results = context.request(Message(code=Code.GET, uri=base + "/5/0/5", observe=0))
        await states.response
        await results.response
        state_stream = states.observation.__aiter__()
        result_stream = results.observation.__aiter__()

        async def until_state(stream, name, wanted):
            while True:
                text = (await stream.__anext__()).payload.decode()
                if text == wanted:
                    say(step=name, text=text)
                    return

        url = "coap://127.0.0.1:%d/fw/image.bin" % port
        await call(context, "write-uri", Code.PUT, base + "/5/0/1", payload=url.encode(),
                   content_format=0)
        await asyncio.wait_for(until_state(state_stream, "downloaded", "2"), timeout=120)
        say(step="gets", count=image.gets)
        await call(context, "update", Code.POST, base + "/5/0/2")
        await asyncio.wait_for(until_state(result_stream, "updated", "1"), timeout=60)
        say(event="checks-done")
        await asyncio.wait_for(state.deregistered, timeout=120)
        await context.shutdown()
        return

    if mode and mode[0] in ("software", "self-update"):
        # Software Management (/9, LwM2M Core E.9): create an instance,
        # pull a package, install, activate, uninstall.
        if mode[2:] == ["wait"]:
            await asyncio.get_event_loop().run_in_executor(None, sys.stdin.readline)
        created = await call(context, "create", Code.POST, base + "/9", payload=b"",
                             content_format=11542)
        instance = base + "/" + "/".join(created.opt.location_path)
        states = context.request(Message(code=Code.GET, uri=instance + "/7", observe=0))
        await states.response
        stream = states.observation.__aiter__()

        async def until_state(name, wanted):
            while True:
                text = (await stream.__anext__()).payload.decode()
                if text == wanted:
                    say(step=name, text=text)
                    return

        await call(context, "write-uri", Code.PUT, instance + "/3", payload=mode[1].encode(),
                   content_format=0)
        await asyncio.wait_for(until_state("delivered", "3"), timeout=60)
        await call(context, "install", Code.POST, instance + "/4")
        await asyncio.wait_for(until_state("installed", "4"), timeout=60)
        await call(context, "name", Code.GET, instance + "/0")
        await call(context, "version", Code.GET, instance + "/1")
        await call(context, "result-installed", Code.GET, instance + "/9")
        if mode[0] == "self-update":
            # Activating the agent's own update: it de-registers and exits
            # for its launcher.
            await call(context, "activate", Code.POST, instance + "/10")
            say(event="checks-done")
            await asyncio.wait_for(state.deregistered, timeout=60)
            await context.shutdown()
            return
        await call(context, "activate", Code.POST, instance + "/10")
        await call(context, "uninstall-early", Code.POST, base + "/9/999/6")
        await call(context, "uninstall", Code.POST, instance + "/6")
        await asyncio.wait_for(until_state("uninstalled", "0"), timeout=60)
        await call(context, "install-again", Code.POST, instance + "/4")
        say(event="checks-done")
        await asyncio.wait_for(state.deregistered, timeout=120)
        await context.shutdown()
        return

    if mode and mode[0] == "firmware-pull":
        # Pull delivery: a URI that fails, then one that works, then Update.
        bad_url, good_url = mode[1], mode[2]
        states = context.request(Message(code=Code.GET, uri=base + "/5/0/3", observe=0))
        results = context.request(Message(code=Code.GET, uri=base + "/5/0/5", observe=0))
        await states.response
        await results.response
        state_stream = states.observation.__aiter__()
        result_stream = results.observation.__aiter__()

        async def until(stream, name, wanted):
            while True:
                notification = await stream.__anext__()
                text = notification.payload.decode()
                if text == wanted:
                    say(step=name, text=text)
                    return

        await call(context, "write-bad-uri", Code.PUT, base + "/5/0/1",
                   payload=bad_url.encode(), content_format=0)
        await asyncio.wait_for(until(result_stream, "bad-uri-result", "7"), timeout=60)
        await call(context, "write-good-uri", Code.PUT, base + "/5/0/1",
                   payload=good_url.encode(), content_format=0)
        await asyncio.wait_for(until(state_stream, "downloaded", "2"), timeout=60)
        await call(context, "update", Code.POST, base + "/5/0/2")
        await asyncio.wait_for(until(result_stream, "updated", "1"), timeout=60)
        await call(context, "protocols", Code.GET, base + "/5/0/8", accept=110)
        say(event="checks-done")
        await asyncio.wait_for(state.deregistered, timeout=120)
        await context.shutdown()
        return

    if mode and mode[0] == "host-action":
        state.marker = mode[2]
        await call(context, "execute", Code.POST, base + mode[1])
        await asyncio.wait_for(state.deregistered, timeout=60)
        await context.shutdown()
        return

    if mode and mode[0] == "reboot":
        await call(context, "execute-reboot", Code.POST, base + "/3/0/4")
        await asyncio.wait_for(state.deregistered, timeout=60)
        await context.shutdown()
        return

    if mode and mode[0] == "platform":
        # Through the agent to the host: a Create on /12 and a Write of an
        # APN, which the D-Bus platform carries to NetworkManager and oFono.
        await call(context, "create-wlan", Code.POST, base + "/12",
                   payload=tlv(5, b"dmagent-e2e") + tlv(8, b"\x01"), content_format=11542)
        await call(context, "write-apn", Code.PUT, base + mode[1], payload=b"iot.e2e",
                   content_format=0)
        say(event="checks-done")
        await asyncio.wait_for(state.deregistered, timeout=120)
        await context.shutdown()
        return

    if mode and mode[0] == "concurrent":
        commands = asyncio.ensure_future(concurrent(context, base))
        await asyncio.wait_for(state.deregistered, timeout=120)
        commands.cancel()
        await context.shutdown()
        return

    if mode:
        commands = asyncio.ensure_future(write_on_signal(context, base, mode[1], mode[2]))
        await asyncio.wait_for(state.deregistered, timeout=120)
        commands.cancel()
        await context.shutdown()
        return

    await call(context, "read-text", Code.GET, base + "/3/0/0")
    await call(context, "read-tlv", Code.GET, base + "/3/0", accept=11542)
    await call(context, "read-senml", Code.GET, base + "/3/0", accept=110)
    await call(context, "write", Code.PUT, base + "/1/0/1", payload=b"120", content_format=0)

    observation = context.request(Message(code=Code.GET, uri=base + "/1/0/1", observe=0))
    first = await observation.response
    say(step="observe", code=str(first.code), text=first.payload.decode(),
        observe=first.opt.observe)
    await call(context, "write-observed", Code.PUT, base + "/1/0/1", payload=b"150", content_format=0)
    async for notification in observation.observation:
        say(step="notification", code=str(notification.code), text=notification.payload.decode(),
            observe=notification.opt.observe)
        break
    observation.observation.cancel()

    # Registration Update Trigger: an Execute that leaves the agent running
    # (/3/0/4 would reboot it; the reboot test does that).
    await call(context, "execute", Code.POST, base + "/1/0/8")
    # A TLV Create with one resource: SSID (5) = "guest".
    await call(context, "create", Code.POST, base + "/12", payload=bytes([0xC5, 0x05]) + b"guest",
               content_format=11542)
    await call(context, "read-created", Code.GET, base + "/12/2/5")
    await call(context, "delete", Code.DELETE, base + "/12/2")
    await call(context, "read-deleted", Code.GET, base + "/12/2/5")
    await call(context, "discover", Code.GET, base + "/1/0", accept=40)
    # A 20 KiB firmware package pushed to /5/0/0: aiocoap splits it into
    # Block1 blocks on its own.
    package = bytes(range(256)) * 80
    await call(context, "firmware-push", Code.PUT, base + "/5/0/0", payload=package,
               content_format=42)
    # LwM2M 1.1 composite operations on the root path, SenML JSON.
    await call(context, "read-composite", Code.FETCH, base + "/",
               payload=b'[{"n":"/3/0/0"},{"n":"/1/0/1"}]', content_format=110)
    await call(context, "write-composite", Code.iPATCH, base + "/",
               payload=b'[{"n":"/1/0/1","v":180},{"n":"/12/1/5","vs":"composite"}]',
               content_format=110)
    await call(context, "read-after-composite", Code.GET, base + "/12/1/5")
    say(event="checks-done")

    await asyncio.wait_for(state.deregistered, timeout=60)
    await context.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
