"""Crawl throughput against a local multi-host fixture with a per-host politeness delay.

20 HTTP servers on different 127.0.0.1 ports play 20 sites. With a per-host delay ``d`` no crawler
may fetch faster than ``hosts / d`` pages/s (the ideal), and a sequential crawler that waits ``d``
between requests manages ``1 / d``. We report geoaudit's pages/s against both.

    python benches/perf/bench_crawl.py [--hosts 20] [--pages 15] [--delay 0.25]

Targets (issue 3): >= 10x sequential on 20 hosts, >= 80 % of ideal.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from geoaudit.config import Settings
from geoaudit.crawl import CrawlOptions, crawl

BODY = """<!doctype html><html lang="en"><head><title>Site {site} page {page}</title>
<meta name="description" content="Fixture page {page} of site {site}."></head><body>
<nav><a href="/">home</a></nav><article><h1>Site {site}, page {page}</h1>
<p>This fixture page stands in for an article. It has a few paragraphs so that extraction does
real work: burr grinders give a more even grind than blade grinders, which matters for espresso.</p>
<h2>Findings</h2><ul><li>Grind size spread fell by 40 percent.</li><li>Extraction time varied less.</li></ul>
<p>We measured twelve grinders over three months and report medians with their ranges.</p>
</article><footer>fixture footer</footer></body></html>"""


def start_site(index: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/robots.txt":
                body, ctype = b"User-agent: *\nDisallow: /admin/\n", "text/plain"
            else:
                body, ctype = BODY.format(site=index, page=self.path).encode(), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sequential(urls: list[str], delay: float) -> float:
    """Pages/s of a one-at-a-time fetch that waits ``delay`` between requests."""
    start = time.perf_counter()
    with httpx.Client(trust_env=False) as client:
        for i, url in enumerate(urls):
            if i:
                time.sleep(delay)
            client.get(url).raise_for_status()
    return len(urls) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--pages", type=int, default=15, help="pages per host")
    ap.add_argument("--delay", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args(argv)

    servers = [start_site(i) for i in range(args.hosts)]
    bases = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    # Interleave hosts in the seed list, as a URL list of competitor pages would be.
    urls = [f"{b}/p{p}" for p in range(args.pages) for b in bases]
    try:
        seq_rate = sequential(urls[: min(len(urls), 12)], args.delay)
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp))
            opts = CrawlOptions(delay=args.delay, per_host=1, concurrency=args.concurrency, allow_private=True)
            start = time.perf_counter()
            result = crawl(urls, settings=settings, options=opts)
            elapsed = time.perf_counter() - start
        fetched = result.counts["fetched"]
        if fetched != len(urls):
            print(f"error: fetched {fetched} of {len(urls)}: {result.counts}", file=sys.stderr)
            return 1
        rate = fetched / elapsed
        ideal = args.hosts / args.delay
        print(f"hosts={args.hosts} pages/host={args.pages} delay={args.delay}s concurrency={args.concurrency}")
        print(f"geoaudit crawl : {rate:7.1f} pages/s  ({fetched} pages in {elapsed:.2f}s, robots.txt honoured)")
        print(f"sequential     : {seq_rate:7.1f} pages/s  -> speed-up {rate / seq_rate:.1f}x (target >= 10x)")
        print(f"ideal          : {ideal:7.1f} pages/s  -> {100 * rate / ideal:.0f}% of ideal (target >= 80%)")
        ok = rate / seq_rate >= 10 and rate / ideal >= 0.8
        print("PASS" if ok else "BELOW TARGET")
        return 0 if ok else 1
    finally:
        # shutdown() waits out each server's poll interval; do them in parallel.
        stoppers = [threading.Thread(target=s.shutdown) for s in servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for s in servers:
            s.server_close()


if __name__ == "__main__":
    sys.exit(main())
