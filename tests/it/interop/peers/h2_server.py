#!/usr/bin/env python3
"""HTTP/2 cleartext (prior knowledge) upload sink for the mmap-body interop tests.

Built on the third-party `h2` package (asyncio + h2.connection.H2Connection),
so the crate's HTTP/2 uploads are checked by a stack other than hyper/h2-rs.

Protocol with the Rust tests:
  * Start: `python h2_server.py --log PATH [--max-frame-size N] [--window N]`.
    The server binds 127.0.0.1 on a random port and prints exactly one line,
    `LISTENING <port>`, to stdout. Nothing else is ever written to stdout.
  * Every request (any method, any path) is answered once its body has ended,
    with `200`, `content-type: application/json` and the body
      {"peer":"h2","method":..,"path":..,"content_length":<int|null>,
       "received":<bytes>,"sha256":"<hex>","data_frames":<n>,
       "max_data_frame":<n>,"complete":true}
    The same object is appended, as one line, to the --log file.
  * A body that turns out longer than `content-length`, or shorter when the
    stream ends, is answered `400` with the same object and "complete":false
    (the stream is then reset with NO_ERROR so the client stops sending).
  * A stream the client resets, or one still open when the connection dies,
    gets a log line with "complete":false and what arrived so far (no response).
  * SIGTERM / SIGINT stop the server at once (exit code 0).
  * `--version` prints `h2 <version>` and exits.
"""
import argparse
import asyncio
import hashlib
import json
import signal
import socket

import h2
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.stream
import hyperframe.frame
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

# h2 checks DATA against content-length itself, but treats a mismatch as a
# *connection* error: it raises out of receive_data(), dropping the events of
# every other frame in that read, and sends GOAWAY. We want per-stream
# accounting and a per-stream 400, so we disable h2's check (the body is still
# counted by us below). `_track_content_length` only does this check.
h2.stream.H2Stream._track_content_length = lambda self, length, end_stream: None

# h2 evaluates repr(frame) for a (no-op) trace log on every frame received, and
# hyperframe's repr hex-encodes the whole payload only to show its first 10
# bytes: ~2 s of CPU per GiB. Hand it just those bytes (same output).
_raw_data_repr = hyperframe.frame._raw_data_repr
hyperframe.frame._raw_data_repr = lambda data: _raw_data_repr(data[:11] if data else data)

DEFAULT_WINDOW = 65535  # RFC 9113 initial window, connection and stream



class Upload:
    """What has been received on one stream so far."""

    def __init__(self, headers):
        h = dict(headers)  # pseudo-headers are unique; last value wins otherwise
        self.method = h.get(":method")
        self.path = h.get(":path")
        cl = h.get("content-length")
        self.content_length = int(cl) if cl is not None else None
        self.received = 0
        self.sha = hashlib.sha256()
        self.data_frames = 0
        self.max_data_frame = 0

    def record(self, complete):
        return {
            "peer": "h2", "method": self.method, "path": self.path,
            "content_length": self.content_length, "received": self.received,
            "sha256": self.sha.hexdigest(), "data_frames": self.data_frames,
            "max_data_frame": self.max_data_frame, "complete": complete,
        }


class H2Protocol(asyncio.Protocol):
    def __init__(self, args, log):
        self.args, self.log = args, log
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.uploads = {}   # stream id -> Upload, for streams still receiving
        self.pending = {}   # stream id -> response bytes not yet sent (flow control)
        self.transport = None

    # -- asyncio callbacks -------------------------------------------------
    live = set()  # open connections, so shutdown can log their streams

    def connection_made(self, transport):
        self.transport = transport
        self.live.add(self)
        self.conn.initiate_connection()
        settings = {}
        if self.args.max_frame_size is not None:
            settings[SettingCodes.MAX_FRAME_SIZE] = self.args.max_frame_size
        if self.args.window is not None:
            settings[SettingCodes.INITIAL_WINDOW_SIZE] = self.args.window
        if settings:
            self.conn.update_settings(settings)
        if self.args.window is not None and self.args.window > DEFAULT_WINDOW:
            # Stream 0 (the connection) is not covered by INITIAL_WINDOW_SIZE.
            self.conn.increment_flow_control_window(self.args.window - DEFAULT_WINDOW)
        self.flush()

    def data_received(self, data):
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            # h2 has queued a GOAWAY; send it and drop the connection.
            self.flush()
            self.transport.close()
            return
        for event in events:
            self.handle(event)
        self.flush()

    def connection_lost(self, exc):
        self.live.discard(self)
        for upload in self.uploads.values():
            self.write_log(upload.record(complete=False))
        self.uploads.clear()

    # -- h2 events ---------------------------------------------------------
    def handle(self, event):
        sid = getattr(event, "stream_id", None)
        if isinstance(event, h2.events.RequestReceived):
            self.uploads[sid] = Upload(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            # Always hand the window back at once (also for streams we already
            # answered), so the client is never stalled by flow control.
            self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            upload = self.uploads.get(sid)
            if upload is None:
                return
            upload.sha.update(event.data)
            upload.received += len(event.data)
            upload.data_frames += 1
            upload.max_data_frame = max(upload.max_data_frame, len(event.data))
            if upload.content_length is not None and upload.received > upload.content_length:
                # Answer now; reset the stream unless the client has ended it.
                self.finish(sid, status=400, reset=event.stream_ended is None)
        elif isinstance(event, h2.events.StreamEnded):
            upload = self.uploads.get(sid)
            if upload is None:
                return
            short = upload.content_length is not None and upload.received != upload.content_length
            self.finish(sid, status=400 if short else 200)
        elif isinstance(event, h2.events.StreamReset):
            upload = self.uploads.pop(sid, None)
            self.pending.pop(sid, None)
            if upload is not None:
                self.write_log(upload.record(complete=False))
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            for pending_sid in list(self.pending):
                self.send_pending(pending_sid)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.flush()
            self.transport.close()

    def finish(self, sid, status, reset=False):
        """Log the upload and answer it; `reset` sends RST_STREAM afterwards."""
        upload = self.uploads.pop(sid)
        record = upload.record(complete=(status == 200))
        self.write_log(record)
        body = json.dumps(record).encode()
        self.conn.send_headers(sid, [
            (":status", str(status)),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ])
        self.pending[sid] = (body, reset)
        self.send_pending(sid)

    def send_pending(self, sid):
        """Send as much of a response body as the peer's flow control allows."""
        body, reset = self.pending.pop(sid)
        try:
            while True:
                n = min(len(body), self.conn.local_flow_control_window(sid),
                        self.conn.max_outbound_frame_size)
                if n == 0 and body:
                    self.pending[sid] = (body, reset)  # wait for WINDOW_UPDATE
                    return
                self.conn.send_data(sid, body[:n], end_stream=(n == len(body)))
                body = body[n:]
                if not body:
                    break
            if reset:
                self.conn.reset_stream(sid, ErrorCodes.NO_ERROR)
        except h2.exceptions.StreamClosedError:
            pass  # the client went away meanwhile

    # -- output --------------------------------------------------------------
    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def write_log(self, record):
        self.log.write(json.dumps(record) + "\n")
        self.log.flush()


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(args.log, "a", encoding="utf-8") as log:
        server = await loop.create_server(lambda: H2Protocol(args, log), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await stop.wait()
        # Stop promptly: drop open connections instead of waiting for them;
        # their unfinished streams are logged with "complete":false.
        server.close()
        for proto in list(H2Protocol.live):
            proto.transport.abort()
        await asyncio.sleep(0)  # let connection_lost() run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="append one JSON line per request here")
    parser.add_argument("--max-frame-size", type=int, help="SETTINGS_MAX_FRAME_SIZE")
    parser.add_argument("--window", type=int,
                        help="SETTINGS_INITIAL_WINDOW_SIZE and connection receive window")
    parser.add_argument("--version", action="store_true", help="print the h2 version")
    args = parser.parse_args()
    if args.version:
        print(f"h2 {h2.__version__}")
        return
    if not args.log:
        parser.error("--log is required")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
