"""A CDP sink that reads the stores' batches from a NATS JetStream stream (issue 19).

On a nats-server cluster the boxes publish over MQTT exactly as on mosquitto; the server maps
the topic ``stores/<s>/devices/<d>/events`` to the subject ``stores.<s>.devices.<d>.events``
(``/`` becomes ``.``; ids must hold no dots). nats-server 2.9 has no MQTT shared subscriptions,
and the streams it keeps for MQTT (``$MQTT_msgs`` and kin) are its own, interest-based and hold
a QoS 1 message only while an MQTT subscriber's session wants it. So the sinks define their own
stream on the uplink subjects (``CDP_EVENTS``, ``stores.*.devices.*.events``, replicated R3 by
default, work-queue retention: a batch leaves the stream once a sink acked it) and share one
durable pull consumer (``cdp``): every sink pulls from it, JetStream hands each batch to one of
them, and a sink that dies holds nothing after ``ack_wait``. Sinks are stateless workers that
can come and go; the stream and the consumer are created idempotently by whichever starts first.

Per fetch, in this order: store all its batches (one transaction, ``CdpIngest.handle_batches``:
a batch that cannot be read is rejected alone, and should the transaction fail, each batch is
tried alone so one the database refuses holds back only itself), then per batch publish the
box's ``delivered`` confirmation and ack to JetStream. A sink killed before its commit acks
nothing and the batches go to another sink after ``ack_wait``; killed after the commit but
before the acks, the batches come again and its events die at the store's key (stored once). The
confirmation is a plain NATS publish on ``stores.<s>.devices.<d>.delivered``: nats hands it to
the box's MQTT subscription as QoS 0, so a box that is offline at that moment misses it and
sends the batch again after ``confirm_timeout_s`` (or its reconnect); the duplicate is confirmed
then. The nats client fails over between the servers it is given, so a killed node costs a
reconnect, not a restart.

Runs the nats client on an asyncio loop in a thread of its own; the store calls run in a worker
thread so a slow commit does not stall the client's pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central.cdp_sink import CdpIngest, Confirmation, Incoming
from central.cdp_store import CdpStore
from contracts import topics
from contracts.batch import encode_confirmation, seq_ranges

log = logging.getLogger(__name__)

STREAM = "CDP_EVENTS"
DURABLE = "cdp"
# The nats subject of every box's event topic (topics.ALL_EVENTS with '/' -> '.', '+' -> '*').
EVENTS_SUBJECT = "stores.*.devices.*.events"
# How long a starting sink keeps asking a JetStream that does not answer (a node just died and
# the cluster is electing leaders) before it gives up.
SETUP_S = 60.0


def topic_of(subject: str) -> str:
    """The MQTT topic a nats subject came from. nats-server 2.9 refuses '.' in MQTT topics, so
    every '.' of a subject from an MQTT client was a '/'."""
    return subject.replace(".", "/")


def subject_of(topic: str) -> str:
    return topic.replace("/", ".")


@dataclass
class JetStreamConfig:
    """Where and how the sinks consume. Every sink of a fleet must agree on stream, subject and
    durable: they are one work queue."""

    servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    stream: str = STREAM
    durable: str = DURABLE
    subject: str = EVENTS_SUBJECT
    replicas: int = 3
    # A batch a sink took and did not ack (it died, or its store failed) goes to another sink
    # after this long; long enough for a commit under load, short enough for a quick failover.
    ack_wait_s: float = 30.0
    # Batches one pull asks for; a sink stores them in one transaction.
    fetch_batch: int = 64
    # Unacked batches over all sinks: bounds what a dead sink holds and what is redelivered.
    max_ack_pending: int = 4096
    # What nobody consumed is dropped after this long (the boxes still hold every unconfirmed
    # event and send it again).
    max_age_s: float = 7 * 24 * 3600.0
    connect_timeout_s: float = 2.0
    # TLS to the cluster: the fleet CA that signed its certificates, and the sink's own
    # certificate and key where the servers ask for one (``verify: true``); edge-ops' --ca,
    # --cert and --tls-key, as for the MQTT broker.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def tls(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file or self.cert_file))
        return ctx


def parse_servers(text: str) -> list[str]:
    """``--nats nats://a:4222,nats://b:4222``: one or more server URLs, comma-separated."""
    urls = [u.strip() for u in text.split(",") if u.strip()]
    if not urls:
        raise ValueError("no nats server URL")
    for u in urls:
        if not (u.startswith("nats://") or u.startswith("tls://")):
            raise ValueError(f"not a nats URL: {u!r} (nats://HOST:PORT or tls://HOST:PORT)")
    return urls


class JetStreamSink(CdpIngest):
    """``start()``, then it stores what the stream holds until ``stop()``."""

    def __init__(
        self,
        cfg: JetStreamConfig,
        db_path: Path | str | CdpStore,
        *,
        on_stored: Callable[[list[str]], None] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(db_path, on_stored=on_stored)
        self.cfg = cfg
        self.name = name or f"cdp-sink-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.topic = f"jetstream:{cfg.stream}/{cfg.durable}"
        self._ready = threading.Event()
        self._failed: list[str] = []
        # The client's last connection error (a refused TLS handshake, a server down): what a
        # sink that never got going says, since the client keeps trying by itself.
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.redelivered = 0
        self.reconnects = 0

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self, wait_s: float = 10.0) -> bool:
        """Connect, make sure the stream and the consumer exist, start pulling. True once
        pulling within ``wait_s``."""
        self._thread = threading.Thread(target=self._run, name="cdp-jetstream", daemon=True)
        self._thread.start()
        return self._ready.wait(wait_s) and not self._failed

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        self._connected.clear()
        self.store.close()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "redelivered": self.redelivered, "reconnects": self.reconnects}

    @property
    def failure(self) -> str | None:
        """Why the sink stopped or never started (a server unreachable, a stream it may not
        create), or None."""
        if self._failed:
            return self._failed[0]
        if not self._ready.is_set() and self.last_error:
            return f"not connected: {self.last_error}"
        return None

    # ---- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported through start(); logged for a running sink
            self._failed.append(str(exc) or repr(exc))
            log.error("cdp-jetstream: stopped: %r", exc)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        import nats  # only a JetStream sink needs the client
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

        cfg = self.cfg

        async def on_disconnect() -> None:
            self._connected.clear()
            # Our own stop closes the connection too: no news then.
            log.log(logging.INFO if self._stop.is_set() else logging.WARNING,
                    "cdp-jetstream: disconnected from nats")  # fmt: skip

        async def on_reconnect() -> None:
            self.reconnects += 1
            self._connected.set()
            log.info("cdp-jetstream: reconnected")

        async def on_error(exc: Exception) -> None:
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            log.debug("cdp-jetstream: %r", exc)

        connecting = asyncio.ensure_future(
            nats.connect(
                servers=cfg.servers,
                tls=cfg.tls(),
                name=self.name,
                connect_timeout=cfg.connect_timeout_s,
                reconnect_time_wait=0.2,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=on_error,
            )
        )
        # The client tries its servers for ever on a first connect too (a cluster still
        # starting, a refused certificate): stop() must end that, or the thread outlives it.
        while not connecting.done():
            if self._stop.is_set():
                # Cancel until it takes: Python 3.11's asyncio.wait_for (inside the client's
                # TLS connect) can swallow a cancel that lands as its inner step finishes, and
                # the client then tries again for ever (seen under load: stop() outlived).
                while not connecting.done():
                    connecting.cancel()
                    await asyncio.wait({connecting}, timeout=0.5)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    connecting.result()
                return
            await asyncio.wait({connecting}, timeout=0.2)
        nc = connecting.result()
        try:
            self._connected.set()
            js = nc.jetstream(timeout=10)
            stream = StreamConfig(
                name=cfg.stream,
                subjects=[cfg.subject],
                num_replicas=cfg.replicas,
                retention=RetentionPolicy.WORK_QUEUE,
                max_age=cfg.max_age_s,
            )
            consumer = ConsumerConfig(
                durable_name=cfg.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=cfg.ack_wait_s,
                max_deliver=-1,  # a batch is never given up on: the store dedups re-deliveries
                max_ack_pending=cfg.max_ack_pending,
                filter_subject=cfg.subject,
            )
            psub = await self._setup(js, stream, consumer)
            self._ready.set()
            log.info("cdp-jetstream: pulling %s from %s/%s", cfg.subject, cfg.stream, cfg.durable)
            await self._pull(nc, psub)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)

    async def _setup(self, js: Any, stream: Any, consumer: Any) -> Any:
        """The stream and the durable consumer, made if missing, and a pull subscription bound to
        the consumer. Asked first, made only when missing: a restarting sink then needs no
        JetStream meta leader, which a killed node may have been (a create then times out until
        the cluster has elected another). Timeouts and "unavailable" are retried for
        ``SETUP_S``; a refusal (e.g. R3 of a single server) is final."""
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import NotFoundError, ServiceUnavailableError

        cfg = self.cfg
        deadline = time.monotonic() + SETUP_S
        while True:
            try:
                try:
                    await js.stream_info(cfg.stream)
                except NotFoundError:
                    try:
                        await js.add_stream(stream)
                    except (NatsTimeout, ServiceUnavailableError):
                        raise
                    except Exception as exc:
                        # Another sink may have made it meanwhile; otherwise it cannot be made.
                        why = getattr(exc, "description", None) or repr(exc)
                        try:
                            await js.stream_info(cfg.stream)
                        except NotFoundError:
                            raise RuntimeError(
                                f"cannot create stream {cfg.stream}: {why}"
                            ) from None
                try:
                    await js.consumer_info(cfg.stream, cfg.durable)
                except NotFoundError:
                    # Identical creates from several sinks at once are answered alike; a differing
                    # consumer of that name is an operator's: kept, and bound to as it is.
                    try:
                        await js.add_consumer(cfg.stream, consumer)
                    except (NatsTimeout, ServiceUnavailableError):
                        raise
                    except Exception as exc:
                        log.info("cdp-jetstream: consumer %s kept as it is: %r", cfg.durable, exc)
                return await js.pull_subscribe_bind(cfg.durable, stream=cfg.stream)
            except (NatsTimeout, TimeoutError, ServiceUnavailableError, NoRespondersError) as exc:
                if self._stop.is_set() or time.monotonic() > deadline:
                    raise
                log.info("cdp-jetstream: JetStream not answering yet (%r), asking again", exc)
                await asyncio.sleep(0.5)

    async def _pull(self, nc: Any, psub: Any) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                msgs = await psub.fetch(self.cfg.fetch_batch, timeout=1.0)
            except (TimeoutError, NatsTimeout):
                continue  # nothing to do this second, or a node is failing over
            except Exception as exc:  # a connection lost mid-pull: the client reconnects
                log.debug("cdp-jetstream: fetch: %r", exc)
                await asyncio.sleep(0.2)
                continue
            if msgs and not self._stop.is_set():  # stopping: JetStream gives them to another sink
                await self._store(loop, nc, msgs)

    async def _store(self, loop: asyncio.AbstractEventLoop, nc: Any, msgs: list[Any]) -> None:
        """One fetch: every batch stored in one transaction, then each confirmed to its box and
        acked. Nothing is acked before the commit."""
        for msg in msgs:
            if msg.metadata.num_delivered > 1:
                self.redelivered += 1
        batches: list[Incoming] = [(topic_of(m.subject), bytes(m.data)) for m in msgs]
        results: list[Confirmation | None | Exception]
        try:
            results = list(await loop.run_in_executor(None, self.handle_batches, batches))
        except Exception as exc:
            if len(batches) == 1:
                results = [exc]
            else:
                log.warning("cdp-jetstream: storing %d batches at once failed (%r): one at a time",
                            len(batches), exc)  # fmt: skip
                results = await loop.run_in_executor(None, self._one_at_a_time, batches)
        for msg, (topic, *_), result in zip(msgs, batches, results, strict=True):
            if isinstance(result, Exception):  # the store failed: no ack, another try later
                log.error("cdp-jetstream: could not store batch from %s: %r", topic, result)
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
                continue
            try:
                if result is not None:
                    batch_id, ids, seqs = result
                    parts = topic.split("/")
                    await nc.publish(
                        subject_of(topics.delivered(parts[1], parts[3])),
                        encode_confirmation(batch_id, ids, time.time(), seq_ranges(seqs)),
                    )
                await msg.ack()
            except Exception as exc:  # no ack: JetStream delivers it again, the store dedups
                log.warning("cdp-jetstream: confirm/ack of %s failed: %r", topic, exc)

    def _one_at_a_time(self, batches: list[Incoming]) -> list[Confirmation | None | Exception]:
        """After a fetch's transaction failed: each batch in a transaction of its own, so one the
        database refuses holds back only itself. Two failures in a row say the store is down
        rather than a batch is bad: the rest are not tried (each try may wait out a connect
        timeout), they come again after the nak."""
        out: list[Confirmation | None | Exception] = []
        in_a_row = 0
        for b in batches:
            if in_a_row >= 2:
                out.append(RuntimeError("not tried: the store failed twice in a row"))
                continue
            try:
                out.append(self.handle_batch(b[0], b[1]))
                in_a_row = 0
            except Exception as exc:
                out.append(exc)
                in_a_row += 1
        return out
