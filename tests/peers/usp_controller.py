#!/usr/bin/env python3
"""A USP controller for the end-to-end tests: paho-mqtt (MQTT 5) and the
USP messages compiled at start from the official .proto files (model/usp)
with grpcio-tools' protoc, so nothing of the agent's codec is used.

Usage: usp_controller.py BROKER_PORT ENDPOINT_ID TOPIC PROTO_DIR
       usp_controller.py ws:PORT ENDPOINT_ID - PROTO_DIR
       usp_controller.py wss:PORT ENDPOINT_ID - PROTO_DIR  (USP_TLS_CERT, USP_TLS_KEY)

Subscribes to TOPIC (or, with ws:PORT, listens for the agent's WebSocket
session on 127.0.0.1:PORT with the v1.usp subprotocol; a record's
"topic" is then ignored), says READY, then reads one JSON command per
line on stdin and prints one JSON line per result on stdout:

  {"op": "session"}              (WebSocket) waits for the agent's session:
                                 {"path": ..., "eid": ..., "subprotocol": ...}
  {"op": "connect_record"[, "timeout": S]}
                                 waits for the agent's MQTT connect record:
                                 {"from": ..., "to": ..., "subscribed_topic": ...}
  {"op": "send", "to": AGENT, "topic": T, "msg": {...}}
                                 sends the Msg (protobuf's JSON mapping) in a
                                 no-session-context record and prints the
                                 answer (the next record that is not a
                                 Notify): {"from": ..., "msg": {...}} or
                                 {"disconnect": ...}
  {"op": "post", "to": ..., "topic": T, "msg": {...}}
                                 as send, without waiting: prints {}
  {"op": "raw", "topic": T, "hex": "..."}
                                 publishes the bytes as they are; prints {}
  {"op": "no_notification", "seconds": S}
                                 no Notify for S seconds: {}
  {"op": "notification"}          waits for the agent's next Notify:
                                 {"from": ..., "msg": {...}}
  {"op": "quiet", "topic": T, "to": AGENT}
                                 a Get whose answer must be the next record
                                 received: prints what came first

Every PUBLISH from the agent must carry Content Type usp.msg and a
Response Topic (R-MQTT.22, R-MQTT.27); one that does not is reported as
{"error": ...}.
"""

import json
import os
import queue
import subprocess
import sys
import tempfile

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

port, endpoint, topic, proto_dir = sys.argv[1:5]

out = tempfile.mkdtemp()
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out}",
     "usp-msg-1-4.proto", "usp-record-1-4.proto"],
    check=True,
)
sys.path.insert(0, out)
import usp_msg_1_4_pb2 as usp  # noqa: E402
import usp_record_1_4_pb2 as record_pb  # noqa: E402
from google.protobuf import json_format  # noqa: E402

received = queue.Queue()
notifications = queue.Queue()


def is_notify(payload):
    record = record_pb.Record()
    try:
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") != "no_session_context":
            return False
        msg = usp.Msg()
        msg.ParseFromString(record.no_session_context.payload)
        return msg.body.request.WhichOneof("req_type") == "notify"
    except Exception:
        return False


def deliver(payload, content_type="usp.msg", reply_to="(websocket)"):
    # The agent's Notify requests apart from its answers.
    target = notifications if is_notify(payload) else received
    target.put((payload, content_type, reply_to))


if port.startswith(("ws:", "wss:")):
    # The WebSocket MTP: this controller is the server, the agent opens
    # the session (R-WS.5), with the v1.usp subprotocol and its endpoint
    # ID in the query (R-WS.9, R-WS.10b).
    import asyncio
    import threading
    import urllib.parse

    from websockets.asyncio.server import serve

    loop = asyncio.new_event_loop()
    sessions = queue.Queue()
    current = {}

    async def handler(ws):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(ws.request.path).query)
        current["ws"] = ws
        sessions.put({"path": ws.request.path, "eid": query.get("eid", [""])[0],
                      "subprotocol": ws.subprotocol})
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    deliver(message)
        except Exception:
            pass

    tls = None
    if port.startswith("wss:"):
        # wss:PORT: TLS with the certificate and key in USP_TLS_CERT and
        # USP_TLS_KEY.
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(os.environ["USP_TLS_CERT"], os.environ["USP_TLS_KEY"])

    async def main():
        async with serve(handler, "127.0.0.1", int(port.split(":")[1]), subprotocols=["v1.usp"],
                         max_size=2**21, ssl=tls):
            started.set()
            await asyncio.Future()

    started = threading.Event()
    threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True).start()
    started.wait(timeout=30)

    def publish(to_topic, data):
        asyncio.run_coroutine_threadsafe(current["ws"].send(data), loop).result(timeout=30)
else:
    subscribed = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=endpoint,
                         protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, message: deliver(
        message.payload,
        getattr(message.properties, "ContentType", None),
        getattr(message.properties, "ResponseTopic", None))
    client.on_subscribe = lambda *args: subscribed.put(True)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    # A session the broker keeps (and restores after a restart): what the
    # agent sends while this controller is away waits for it.
    connect_props = Properties(PacketTypes.CONNECT)
    connect_props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", int(port), clean_start=False, properties=connect_props)
    client.loop_start()
    subscribed.get(timeout=30)

    def publish(to_topic, data):
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "usp.msg"
        props.ResponseTopic = topic
        client.publish(to_topic, data, qos=1, properties=props).wait_for_publish()
print("READY", flush=True)


def next_record(timeout=30, source=None):
    payload, content_type, reply_to = (source or received).get(timeout=timeout)
    record = record_pb.Record()
    record.ParseFromString(payload)
    problems = []
    if content_type != "usp.msg":
        problems.append(f"content type {content_type!r}")
    if not reply_to:
        problems.append("no response topic")
    return record, reply_to, problems


def answer(record, reply_to, problems):
    if problems:
        return {"error": ", ".join(problems)}
    kind = record.WhichOneof("record_type")
    result = {"from": record.from_id, "to": record.to_id, "reply_to": reply_to}
    if kind == "no_session_context":
        msg = usp.Msg()
        msg.ParseFromString(record.no_session_context.payload)
        result["msg"] = json_format.MessageToDict(msg)
    elif kind == "disconnect":
        result["disconnect"] = json_format.MessageToDict(record.disconnect)
    elif kind == "mqtt_connect":
        result["subscribed_topic"] = record.mqtt_connect.subscribed_topic
        result["version"] = record.mqtt_connect.version
    elif kind == "websocket_connect":
        result["websocket_connect"] = True
    else:
        result["record_type"] = kind
    return result


def wrap(to, msg):
    rec = record_pb.Record(version="1.3", to_id=to, from_id=endpoint)
    rec.no_session_context.payload = msg.SerializeToString()
    return rec.SerializeToString()


for line in sys.stdin:
    command = json.loads(line)
    op = command["op"]
    try:
        if op == "connect_record":
            print(json.dumps(answer(*next_record(timeout=command.get("timeout", 30)))), flush=True)
        elif op == "send":
            msg = json_format.ParseDict(command["msg"], usp.Msg())
            publish(command["topic"], wrap(command["to"], msg))
            print(json.dumps(answer(*next_record())), flush=True)
        elif op == "post":
            msg = json_format.ParseDict(command["msg"], usp.Msg())
            publish(command["topic"], wrap(command["to"], msg))
            print("{}", flush=True)
        elif op == "raw":
            publish(command["topic"], bytes.fromhex(command["hex"]))
            print("{}", flush=True)
        elif op == "session":
            print(json.dumps(sessions.get(timeout=30)), flush=True)
        elif op == "no_notification":
            # Nothing for SECONDS: {} ; else what came, as an error.
            try:
                came = answer(*next_record(timeout=command["seconds"], source=notifications))
                print(json.dumps({"error": "a notification came", "came": came}), flush=True)
            except queue.Empty:
                print("{}", flush=True)
        elif op == "notification":
            print(json.dumps(answer(*next_record(source=notifications))), flush=True)
        elif op == "quiet":
            msg = usp.Msg()
            msg.header.msg_id = "quiet"
            msg.header.msg_type = usp.Header.GET
            msg.body.request.get.param_paths.append("Device.DeviceInfo.SerialNumber")
            publish(command["topic"], wrap(command["to"], msg))
            print(json.dumps(answer(*next_record())), flush=True)
        else:
            print(json.dumps({"error": f"unknown op {op}"}), flush=True)
    except queue.Empty:
        print(json.dumps({"error": "nothing came"}), flush=True)
os._exit(0)
