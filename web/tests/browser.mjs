// The browser side of the live UI's tests (tests/it/live_page.rs runs it): headless Debian
// Chromium driven by playwright-core. Shared by the tests' scripts in this folder.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

export async function openBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // One a line, shared with `bench --only ui` (src/commands/bench/ui.rs).
    args: readFileSync(new URL("../chromium-flags.txt", import.meta.url), "utf8")
      .split("\n")
      .filter((flag) => flag.trim() !== ""),
  });
}

// A page that records its script errors and failed requests in `problems`.
export async function watchedPage(browser) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()}`));
  page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()}`));
  return { page, problems };
}
