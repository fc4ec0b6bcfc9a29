/**
 * vitsctl as a process: arguments, exit codes, `inspect` on RAM image files.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BASER0, BASER1, DT_BASE, ITT_10, PROPBASER, RAM_BASE, consistentImage } from './image-fixture.js';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'vitsctl-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vitsctl(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/vitsctl.ts'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

describe('vitsctl', { timeout: 180_000 }, () => {
  it('--help lists every command and the exit codes; --version prints the package version', () => {
    const h = vitsctl('--help');
    expect(h.code).toBe(0);
    for (const c of ['stats', 'save', 'restore', 'migrate', 'inspect', 'demo']) expect(h.stdout).toContain(`vitsctl ${c}`);
    expect(h.stdout).toMatch(/Exit codes:/);
    const v = vitsctl('--version');
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('usage errors exit 2', () => {
    expect(vitsctl().code).toBe(2);
    expect(vitsctl('no-such-command').code).toBe(2);
    expect(vitsctl('inspect').code).toBe(2); // --ram missing
    const bad = vitsctl('inspect', '--ram', '/dev/null', '--baser0', 'xyz', '--baser1', '1');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--baser0/);
  });

  it('a missing file exits 4, an unreachable daemon exits 3', () => {
    expect(vitsctl('inspect', '--ram', join(dir, 'nope'), '--baser0', '1', '--baser1', '1').code).toBe(4);
    const s = vitsctl('stats', '--socket', join(dir, 'no.sock'));
    expect(s.code).toBe(3);
    expect(s.stderr).toMatch(/no\.sock/);
  });

  it('inspect: a consistent image exits 0 and lists the devices', () => {
    const file = join(dir, 'good.ram');
    writeFileSync(file, consistentImage());
    const r = vitsctl('inspect', '--ram', file, '--gpa-base', hex(BigInt(RAM_BASE)), '--baser0', hex(BASER0), '--baser1', hex(BASER1), '--propbaser', hex(PROPBASER), '--nr-vcpus', '2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('DTE[0x10]');
    expect(r.stdout).toContain('ITE[3] INTID 8195 ICID 0');
    expect(r.stdout).toContain('No inconsistencies.');
  });

  it('inspect: a corrupted image reports the entry and the field, and exits 1 (text and --json)', () => {
    const img = consistentImage();
    // Corrupt DTE[0x10].Size to 16 (17 EventID bits) and ITE[0x10:1].ICID to 9.
    img.writeBigUInt64LE(0x8010_0000_0800_6010n, DT_BASE + 0x10 * 8 - RAM_BASE);
    const file = join(dir, 'bad.ram');
    writeFileSync(file, img);
    const args = ['inspect', '--ram', file, '--baser0', hex(BASER0), '--baser1', hex(BASER1)];
    const r = vitsctl(...args);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/error\s+DTE\[0x10\] field Size/);
    const img2 = consistentImage();
    img2.writeBigUInt64LE(0x0002_0000_2001_0009n, ITT_10 + 8 - RAM_BASE);
    writeFileSync(file, img2);
    const j = vitsctl(...args, '--json');
    expect(j.code).toBe(1);
    const report = JSON.parse(j.stdout) as { ok: boolean; issues: { entry: string; field: string; severity: string }[] };
    expect(report.ok).toBe(false);
    expect(report.issues.filter((i) => i.severity === 'error').map((i) => `${i.entry}/${i.field}`)).toEqual(['ITE[0x10:1]/ICID']);
  });
});
