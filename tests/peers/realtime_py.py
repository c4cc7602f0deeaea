"""python-socketio (unmodified) against the Ferrobase realtime hub.

Usage: python realtime_py.py '<json spec>'  (written by server/tests/it/realtime)
Prints "checks passed" when every check held; exits 1 with the failures otherwise.
"""
import json
import sys
import threading
from urllib.parse import urlparse

import socketio

spec = json.loads(sys.argv[1])
failures = []


def check(name, cond, detail=None):
    if not cond:
        failures.append(f"{name}: {detail!r}")


def connect(token, transports):
    u = urlparse(spec["url"])
    sio = socketio.Client(reconnection=False)
    got = {}
    events = {}

    def on_any(event, data=None):
        events.setdefault(event, []).append(data)
        ev = got.get(event)
        if ev:
            ev.set()

    sio.on("*", on_any)
    sio.connect(
        f"{u.scheme}://{u.netloc}",
        socketio_path=u.path.rstrip("/") + "/realtime/v1/socket.io",
        auth={"token": token} if token is not None else None,
        transports=transports,
        wait_timeout=5,
    )
    return sio, got, events


def wait_for(got, events, event, pred, timeout=5.0):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        for d in events.get(event, []):
            if pred(d):
                return d
        ev = got.setdefault(event, threading.Event())
        ev.wait(0.05)
        ev.clear()
    return None


def run(transports):
    tag = "+".join(transports)
    a, a_got, a_events = connect(spec["anon"], transports)
    b, _, _ = connect(spec["userA"], transports)
    r = a.call("realtime:subscribe", {"channel": "public:py"}, timeout=5)
    check(f"[{tag}] subscribe", r.get("ok") is True and r["channel"] == "public:py", r)
    r = b.call("realtime:subscribe", {"channel": "public:py", "presence": False}, timeout=5)
    check(f"[{tag}] observer subscribe", r.get("ok") is True, r)
    p = b.call("realtime:publish", {"channel": "public:py", "event": "note", "payload": {"v": tag}}, timeout=5)
    check(f"[{tag}] publish ack", p.get("ok") is True and p.get("messageId"), p)
    m = wait_for(a_got, a_events, "note", lambda d: isinstance(d, dict) and d.get("v") == tag)
    check(f"[{tag}] delivered", m is not None and m["meta"]["channel"] == "public:py", m)
    bad = a.call("realtime:subscribe", {"channel": "no such"}, timeout=5)
    check(f"[{tag}] bad channel", bad.get("ok") is False and bad["error"]["code"] == "invalid_channel", bad)
    a.emit("whatever", {"x": 1})
    e = wait_for(a_got, a_events, "realtime:error", lambda d: d.get("code") == "unknown_event")
    check(f"[{tag}] unknown event", e is not None, a_events.get("realtime:error"))
    check(f"[{tag}] still connected", a.connected, a.connected)
    a.disconnect()
    b.disconnect()
    u = urlparse(spec["url"])
    refused = socketio.Client(reconnection=False)
    errors = []
    refused.on("connect_error", lambda data=None: errors.append(data))
    try:
        refused.connect(
            f"{u.scheme}://{u.netloc}",
            socketio_path=u.path.rstrip("/") + "/realtime/v1/socket.io",
            auth={"token": "not-a-token"},
            transports=transports,
            wait_timeout=5,
        )
        check(f"[{tag}] forged token refused", False, "connected")
    except socketio.exceptions.ConnectionError:
        check(f"[{tag}] forged token refused with a reason",
              any("token" in json.dumps(e).lower() for e in errors), errors)


for t in (["websocket"], ["polling"]):
    try:
        run(t)
    except Exception as exc:  # noqa: BLE001 - report every failure
        failures.append(f"{t}: exception {exc!r}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("checks passed")
