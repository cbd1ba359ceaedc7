// Headless-Chromium driver for the interop test.
//
//   node browser.mjs <url> <screenshot.png> [timeout_ms]
//
// Opens <url> (player.html served by the server under test), waits for the page to set
// `window.__result`, takes a full-page screenshot, prints `BROWSER <version>` and then
// JSON.stringify(window.__result) as the last line of stdout. Exit codes: 0 = result obtained,
// 3 = result obtained but it is `{error: ...}` (still printed as the last stdout line),
// 1 = driver/browser error, 2 = timeout, 64 = usage. Diagnostics go to stderr.
//
// Finding playwright-core. ESM `import` resolves bare names relative to this file only and
// ignores NODE_PATH, so the module is located in this order:
//   1. $PLAYWRIGHT_DIR: a directory that contains node_modules/playwright-core (the directory
//      `npm install playwright-core` was run in), or the node_modules directory itself, or the
//      playwright-core package directory;
//   2. a plain `import('playwright-core')` (node_modules next to / above this file);
//   3. require() resolution from the current working directory, which also honours NODE_PATH
//      (CommonJS resolution reads NODE_PATH; ESM does not).
// Chromium: $CHROMIUM (default /usr/bin/chromium). Playwright puts the throw-away profile in
// os.tmpdir(): set TMPDIR to a directory the caller deletes, so that nothing is left behind even
// if this process is SIGKILLed (the browser itself exits when its CDP pipe closes).

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const USAGE = 'usage: node browser.mjs <url> <screenshot.png> [timeout_ms]';
const [url, shotPath, timeoutArg] = process.argv.slice(2);
if (!url || !shotPath) {
  console.error(USAGE);
  process.exit(64);
}
const timeoutMs = timeoutArg === undefined ? 60000 : Number(timeoutArg);
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
  console.error(`bad timeout_ms ${JSON.stringify(timeoutArg)}\n${USAGE}`);
  process.exit(64);
}
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(2)}s`;
// eslint-disable-next-line no-control-regex
const log = (msg) => console.error(`[browser.mjs ${elapsed()}] ${String(msg).replace(/\x1b\[[0-9;]*m/g, '')}`);

// Hard stop: if anything (launch, page, screenshot, close) hangs past the deadline, exit.
// process.exit() runs playwright's 'exit' handler, which SIGKILLs the browser's process group
// (playwright spawns it detached, as a group leader) and removes its temp profile.
let browser = null;
const hardStop = setTimeout(() => {
  log(`TIMEOUT: no result within ${timeoutMs} ms (hard stop), killing the browser`);
  process.exit(2);
}, timeoutMs + 10000);
hardStop.unref();

async function loadPlaywright() {
  const tried = [];
  const dir = process.env.PLAYWRIGHT_DIR;
  if (dir) {
    // Resolution from <dir> walks <dir>/node_modules and its ancestors, so <dir> may be the
    // npm project dir, its node_modules, or the package dir itself.
    const base = path.resolve(dir);
    try {
      const req = createRequire(path.join(base, 'noop.js'));
      return { pw: req('playwright-core'), from: req.resolve('playwright-core') };
    } catch (e) {
      tried.push(`from ${base}: ${e.code || e.message}`);
    }
    throw new Error(`playwright-core not found via PLAYWRIGHT_DIR=${dir}:\n  ${tried.join('\n  ')}`);
  }
  try {
    const m = await import('playwright-core');
    return { pw: m.default && m.default.chromium ? m.default : m, from: 'import(playwright-core)' };
  } catch (e) {
    tried.push(`import(): ${e.code || e.message}`);
  }
  try {
    const req = createRequire(path.join(process.cwd(), 'noop.js'));
    return { pw: req('playwright-core'), from: req.resolve('playwright-core') };
  } catch (e) {
    tried.push(`require from cwd ${process.cwd()} (+NODE_PATH): ${e.code || e.message}`);
  }
  throw new Error(`playwright-core not found (set PLAYWRIGHT_DIR):\n  ${tried.join('\n  ')}`);
}

async function main() {
  fs.mkdirSync(path.dirname(path.resolve(shotPath)), { recursive: true });
  const { pw, from } = await loadPlaywright();
  log(`playwright-core from ${from}`);
  const { chromium } = pw;
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

  const deadline = started + timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());

  // launch() gives a fresh temporary user-data-dir, deleted again on close.
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: left(),
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Let <video> autoplay without a user gesture (muted autoplay is allowed anyway).
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  console.log(`BROWSER ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 1000, height: 720 } });
  const page = await context.newPage();
  if (process.env.BROWSER_CACHE !== '1') {
    // Bypass Chromium's HTTP cache (as DevTools "Disable cache" does): without this the
    // in-memory cache of the (off-the-record) context turns the media player's open-ended
    // `Range: bytes=N-` into bounded ranges and conditional revalidations (304) of the parts
    // it already holds. BROWSER_CACHE=1 keeps the cache.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  }
  page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log(`pageerror: ${e}`));
  page.on('requestfailed', (r) => log(`requestfailed: ${r.url()} ${r.failure() && r.failure().errorText}`));

  const resp = await page.goto(url, { timeout: left(), waitUntil: 'domcontentloaded' });
  if (!resp) throw new Error(`no response for ${url}`);
  if (!resp.ok()) throw new Error(`GET ${url} -> ${resp.status()}`);

  let result;
  try {
    const h = await page.waitForFunction(() => window.__result, null, { timeout: left(), polling: 100 });
    result = await h.jsonValue();
  } catch (e) {
    const trace = await page.evaluate(() => window.__log || []).catch(() => ['(page log unavailable)']);
    log(`page event log:\n  ${trace.join('\n  ')}`);
    try {
      await page.screenshot({ path: shotPath, fullPage: true, timeout: 5000 });
      log(`screenshot (at timeout) -> ${shotPath}`);
    } catch (_) { /* ignore */ }
    const first = String(e && e.message).split('\n')[0];
    if (e && e.name === 'TimeoutError') {
      const err = new Error(`TIMEOUT: window.__result not set within ${timeoutMs} ms (${first})`);
      err.exitCode = 2;
      throw err;
    }
    throw new Error(`waiting for window.__result failed: ${first}`);
  }
  await page.screenshot({ path: shotPath, fullPage: true, timeout: Math.max(5000, left()) });
  log(`screenshot -> ${shotPath}`);
  console.log(JSON.stringify(result));
  if (result && typeof result === 'object' && 'error' in result) {
    const err = new Error(`page reported an error: ${result.error}`);
    err.exitCode = 3;
    throw err;
  }
}

let code = 0;
try {
  await main();
} catch (e) {
  log(`ERROR: ${e && e.stack ? e.stack : e}`);
  code = e && e.exitCode ? e.exitCode : 1;
} finally {
  if (browser) {
    // Bounded close; if it hangs, process.exit below still kills the browser group.
    await Promise.race([
      browser.close().catch((e) => log(`close: ${e}`)),
      new Promise((r) => setTimeout(r, 5000).unref()),
    ]);
  }
}
log(`done, exit ${code}`);
process.exit(code);
