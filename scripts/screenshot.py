"""Take the README's screenshot: open a running jobpulse page in headless Chromium and save a PNG.

Usage: python scripts/screenshot.py http://127.0.0.1:8000/admin/jobs docs/screenshot.png [--wait 20]
"""

from __future__ import annotations

import argparse
import os

from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds to let the page fill (default 20)")
    parser.add_argument("--width", type=int, default=1360)
    parser.add_argument("--height", type=int, default=1180)
    args = parser.parse_args()
    chromium = os.environ.get("JOBPULSE_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        flags = "--headless=new --no-sandbox --disable-gpu --disable-background-networking"
        flags += " --disable-component-update --no-first-run --disable-sync"
        browser = p.chromium.launch(executable_path=chromium, args=flags.split())
        page = browser.new_page(viewport={"width": args.width, "height": args.height}, color_scheme="light")
        page.goto(args.url)
        page.wait_for_selector('#conn[data-state="live"]')
        page.wait_for_timeout(args.wait * 1000)
        page.screenshot(path=args.out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
