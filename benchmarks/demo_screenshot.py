"""Screenshot of the web demo restoring an example image, for docs/web-demo.md.

    python benchmarks/demo_screenshot.py docs/images/web-demo.png [--weights DIR]

Starts the app on a free localhost port, drives Debian's Chromium with Playwright (headless,
no download), uploads a packaged example image, runs it and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse
import socket

from playwright.sync_api import sync_playwright

from demoe.web.app import example_images, launch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--image", default=None, help="image to upload (default: the low-light example)")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    image = args.image or next(p for p in example_images() if "low_light" in p)
    blocks, app, url = launch(args.weights, port=port, device="cpu", block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.locator("#input-image input[type=file]").set_input_files(image)
            page.locator("#run-button").click()
            page.locator("#summary").get_by_text("Experts used").wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        blocks.close()
        app.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
