// The web console in a real browser (Debian's Chromium, headless, through
// playwright-core), against a real ferry-control and ferry-agent that
// tests/integration/console_test.cc starts. It walks what a customer does: from the
// gateway's local page to the console, sign up, activate (a wrong key first), create a
// volume, take a snapshot, set bandwidth limits, watch metrics, make an API token;
// then another account, which must see none of it. A screenshot of each page goes to
// SHOTS. Prints "RESULT {json}" for the C++ side to check the gateway itself.
//
// Environment: CONSOLE (https://localhost:PORT), AGENT_PAGE (http://127.0.0.1:PORT),
// SHOTS (a directory), CHROMIUM (default /usr/bin/chromium).

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CONSOLE = process.env.CONSOLE;
const AGENT_PAGE = process.env.AGENT_PAGE;
const SHOTS = process.env.SHOTS;
const PASSWORD = 'correct horse battery';
mkdirSync(SHOTS, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

// The flash message the action brings (not one left from before).
async function flashAfter(page, action) {
  const flash = page.locator('#flash');
  const before = ((await flash.textContent()) || '').trim();
  await action();
  for (let i = 0; i < 150; i += 1) {
    const now = ((await flash.textContent()) || '').trim();
    if (now && now !== before) return now;
    await page.waitForTimeout(100);
  }
  throw new Error(`no new message after the action (still "${before}")`);
}

async function signUp(page, email) {
  await page.getByRole('link', { name: 'Sign up' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
}

const profile = mkdtempSync(join(tmpdir(), 'ferry-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true, // the provider's own CA, made by the test
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
  viewport: { width: 1200, height: 900 },
});
const result = {};
try {
  const page = browser.pages()[0] || await browser.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  // The gateway's page sends the customer to the console with its key.
  await page.goto(`${AGENT_PAGE}/?activationRegion=eu-1`);
  await page.waitForURL(/\/console\/#\/login/);
  await shot(page, '01-login');
  await signUp(page, 'carol@example.com');
  await page.getByRole('heading', { name: 'Activate a gateway' }).waitFor();
  const key = await page.getByLabel('Activation key').inputValue();
  check(/^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(key), `the key came prefilled (${key})`);
  await shot(page, '02-activate');

  // A wrong key: a clear error, nothing activated.
  await page.getByLabel('Activation key').fill('ABCD-EFGH-JKMN-PQ23');
  await page.getByLabel('Gateway name').fill('branch');
  const wrong = await flashAfter(page, () => page.getByRole('button', { name: 'Activate' }).click());
  check(/activation key/i.test(wrong), `a wrong key says so: "${wrong}"`);
  await shot(page, '03-wrong-key');

  await page.getByLabel('Activation key').fill(key);
  await page.getByLabel('Time zone').selectOption('Europe/Berlin');
  await page.getByRole('button', { name: 'Activate' }).click();
  await page.getByRole('heading', { name: 'branch' }).waitFor();
  result.gateway = decodeURIComponent(page.url().split('#/gateways/')[1]);
  await page.locator('.state.online').first().waitFor({ timeout: 60000 });
  check(true, `gateway ${result.gateway} is online`);

  // A volume, served by the gateway.
  await page.getByLabel('Volume name').fill('disk0');
  await page.getByLabel('Size').fill('64M');
  await page.getByRole('button', { name: 'Create volume' }).click();
  const volumeRow = page.locator('section', { has: page.getByRole('heading', { name: 'Volumes' }) }).locator('tr', { hasText: 'disk0' });
  await volumeRow.locator('.state.available').waitFor({ timeout: 60000 });
  check(true, 'volume disk0 is available');

  // A snapshot of it, completed.
  await page.getByRole('button', { name: 'Snapshot disk0' }).click();
  const snapshots = page.locator('section', { has: page.getByRole('heading', { name: 'Snapshots' }) });
  await snapshots.locator('.state.completed').first().waitFor({ timeout: 60000 });
  check(true, 'the snapshot completed');

  // A volume made from it, readable at once; its origin shown.
  const snapId = (await snapshots.locator('tbody tr code').first().textContent()).trim();
  await page.getByLabel('Volume name').fill('restored');
  await page.getByLabel('Made from').selectOption({ label: `Snapshot ${snapId} of disk0` });
  await page.getByRole('button', { name: 'Create volume' }).click();
  const restoredRow = page.locator('section', { has: page.getByRole('heading', { name: 'Volumes' }) })
    .locator('tr', { hasText: 'restored' });
  await restoredRow.locator('.state.available').waitFor({ timeout: 60000 });
  await restoredRow.getByText(`from snapshot ${snapId} of disk0`).waitFor();
  check(true, `volume restored made from snapshot ${snapId}`);

  // A snapshot schedule for it.
  await snapshots.getByLabel('Every (hours)').fill('6');
  await snapshots.getByLabel('Keep the last').fill('4');
  await snapshots.getByRole('button', { name: 'Save schedule' }).click();
  await snapshots.getByText('disk0: a snapshot every 6 h, keeping the last 4').waitFor();
  check(true, 'a snapshot schedule is set');

  // iSCSI: the volume lists its target (as the gateway reported it); CHAP set from the
  // console — the secret never shown back — then turned off.
  await volumeRow.getByText('iqn.2026-11.io.ferry:disk0').waitFor({ timeout: 30000 });
  check(true, 'the volume lists its iSCSI target');
  const iscsi = page.locator('section', { has: page.getByRole('heading', { name: 'iSCSI access' }) });
  await iscsi.getByLabel('Initiator user').fill('host1');
  await iscsi.getByLabel('Initiator secret').fill('short');
  await iscsi.getByRole('button', { name: 'Save CHAP' }).click();
  check(await iscsi.getByText('disk0: no CHAP').isVisible(), 'a secret under 12 characters is not sent');
  await iscsi.getByLabel('Initiator secret').fill('s3cret-s3cret');
  await iscsi.getByRole('button', { name: 'Save CHAP' }).click();
  await iscsi.getByText('disk0: CHAP one-way (initiator host1).').waitFor({ timeout: 30000 });
  await volumeRow.getByText(/· CHAP ·/).waitFor({ timeout: 30000 });
  check(!(await page.content()).includes('s3cret-s3cret'), 'CHAP set; the secret is nowhere on the page');
  await iscsi.getByRole('button', { name: 'Turn CHAP off' }).click();
  await iscsi.getByText('disk0: no CHAP').waitFor({ timeout: 30000 });
  check(true, 'CHAP turned off');

  // A second snapshot; the first one deleted after a confirmation.
  const firstSnapshot = (await snapshots.locator('tbody tr code').first().textContent()).trim();
  await page.getByRole('button', { name: 'Snapshot disk0' }).click();
  await snapshots.locator('tbody tr').nth(1).locator('.state.completed').waitFor({ timeout: 60000 });
  page.once('dialog', (d) => d.accept());
  await snapshots.getByRole('button', { name: `Delete snapshot ${firstSnapshot}` }).click();
  await snapshots.locator('tbody tr', { hasText: firstSnapshot }).waitFor({ state: 'detached', timeout: 60000 });
  check(true, `snapshot ${firstSnapshot} deleted after a confirmation`);

  // A volume deleted: nothing happens when the confirmation is dismissed, it goes
  // when it is accepted.
  await page.getByLabel('Volume name').fill('scratch');
  await page.getByLabel('Size').fill('16M');
  await page.getByRole('button', { name: 'Create volume' }).click();
  const scratch = page.locator('section', { has: page.getByRole('heading', { name: 'Volumes' }) })
    .locator('tr', { hasText: 'scratch' });
  await scratch.locator('.state.available').waitFor({ timeout: 60000 });
  page.once('dialog', (d) => d.dismiss());
  await page.getByRole('button', { name: 'Delete scratch' }).click();
  await page.waitForTimeout(3500);  // a refresh later it is still there
  check(await scratch.count() === 1, 'a dismissed confirmation deletes nothing');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete scratch' }).click();
  await scratch.waitFor({ state: 'detached', timeout: 60000 });
  check(true, 'volume scratch deleted after a confirmation');

  // Bandwidth limits with one interval.
  const limits = page.locator('section', { has: page.getByRole('heading', { name: 'Bandwidth limits' }) });
  await limits.getByLabel('Upload rate').first().fill('10M');
  await limits.getByRole('button', { name: 'Add interval' }).click();
  await limits.getByLabel('Upload rate').nth(1).fill('1M');
  const saved = await flashAfter(page, () => limits.getByRole('button', { name: 'Save limits' }).click());
  check(/saved/i.test(saved), `limits saved: "${saved}"`);
  const history = page.locator('section', { has: page.getByRole('heading', { name: 'Request history' }) });
  await history.locator('tr', { hasText: 'bandwidth.set' }).locator('.state.done').waitFor({ timeout: 60000 });
  check(true, 'the gateway applied the limits');

  // A bad interval: the API's reason, readable.
  await limits.getByRole('button', { name: 'Add interval' }).click();
  await limits.getByLabel('From').last().fill('20:00');
  await limits.getByLabel(/Until/).last().fill('19:00');
  const bad = await flashAfter(page, () => limits.getByRole('button', { name: 'Save limits' }).click());
  check(/end must be after start/.test(bad), `a bad interval is explained: "${bad}"`);

  // Metrics charts, from the reports the gateway sends.
  let charts = 0;
  for (let i = 0; i < 30 && charts < 4; i += 1) {
    await page.reload();
    await page.getByRole('heading', { name: 'Metrics, last 6 hours' }).waitFor();
    charts = await page.locator('svg.chart').count();
    if (charts < 4) await page.waitForTimeout(1000);
  }
  // The hit ratio has no points until something reads the volume; the other four do.
  check(charts >= 4, `metrics charts drawn (${charts})`);
  const every = await snapshots.getByLabel('Every (hours)').inputValue();
  check(every === '6', `the form shows the schedule set (every ${every} h)`);
  await shot(page, '04-gateway');

  // Every form field has a label.
  const unlabeled = await page.evaluate(() => [...document.querySelectorAll('input, select')]
    .filter((el) => !el.closest('label') && !el.getAttribute('aria-label') && !el.labels?.length).length);
  check(unlabeled === 0, 'every input has a label');

  // Narrow screen: nothing wider than the window.
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `fits a narrow screen (overflow ${overflow}px)`);
  await shot(page, '05-gateway-narrow');
  await page.setViewportSize({ width: 1200, height: 900 });

  // The list, and an API token.
  await page.getByRole('link', { name: 'Gateways', exact: true }).click();
  await page.getByRole('link', { name: 'branch' }).waitFor();
  await shot(page, '06-gateways');
  await page.getByRole('link', { name: 'API tokens' }).click();
  await page.getByLabel('Token name').fill('ci');
  await page.getByRole('button', { name: 'Create token' }).click();
  const token = (await page.locator('#new-token').textContent()).trim();
  check(token.startsWith('fy_'), 'an API token is shown once');
  result.token = token;
  await shot(page, '07-tokens');

  // Keyboard only: log out and in again without the mouse.
  await page.getByRole('button', { name: 'Log out' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
  await page.getByLabel('Email').focus();
  await page.keyboard.type('carol@example.com');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Gateways' }).waitFor();
  check(true, 'logging in works from the keyboard');

  // Another account sees nothing of carol's.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
  await signUp(page, 'dave@example.com');
  await page.getByText('No gateways yet').waitFor();
  const denied = await flashAfter(page,
    () => page.goto(`${CONSOLE}/console/#/gateways/${encodeURIComponent(result.gateway)}`));
  check(/no gateway/i.test(denied), `dave cannot open carol's gateway: "${denied}"`);
  await shot(page, '08-other-account');

  check(consoleErrors.filter((e) => !/status of (4\d\d)/.test(e)).length === 0,
    `no script errors (${consoleErrors.join(' | ')})`);
  console.log(`RESULT ${JSON.stringify(result)}`);
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
