// Drives headless Chromium (Debian `chromium`) through the arcly player page
// with playwright-core: opens PAGE_URL (which names a stream to play),
// waits for playback, samples the video twice, 3 s apart, and prints one
// JSON line: {before, after, listed} (listed: rows in the stream list), each of before and after {t, frames, dropped, latency, hlsLatency,
// ll}. latency = now - hls.playingDate (EXT-X-PROGRAM-DATE-TIME of the frame
// on screen), in seconds. Exits non-zero on any failure.
//
// Usage: node player.mjs PAGE_URL [CHROMIUM]
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, executablePath = '/usr/bin/chromium'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node player.mjs PAGE_URL [CHROMIUM]');
  process.exit(2);
}
const userDataDir = mkdtempSync(join(tmpdir(), 'arcly-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => console.error(`page: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`page error: ${e}`));
  await page.goto(url);
  await page.waitForFunction(() => window.arcly && window.arcly.video.currentTime > 0.5, null, { timeout: 30000 });
  // The list (refreshed from /api/v1/streams) shows the stream being played.
  const stream = await page.evaluate(() => window.arcly.stream);
  await page.waitForSelector(`#streams tr[data-stream="${stream}"]`, { timeout: 10000 });
  const listed = await page.locator('#streams tr').count();
  const sample = () =>
    page.evaluate(() => {
      const { video, hls, ll } = window.arcly;
      const q = video.getVideoPlaybackQuality();
      return {
        t: video.currentTime,
        frames: q.totalVideoFrames,
        dropped: q.droppedVideoFrames,
        latency: hls && hls.playingDate ? (Date.now() - hls.playingDate.getTime()) / 1000 : null,
        hlsLatency: hls ? hls.latency : null,
        ll,
      };
    });
  const before = await sample();
  await page.waitForTimeout(3000);
  const after = await sample();
  console.log(JSON.stringify({ before, after, listed }));
} catch (e) {
  console.error(`player test failed: ${e}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
