import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Prerequisite, requirePrerequisite, runs, skipLine } from './prerequisites.js';

let n = 0;
/** A prerequisite with a fresh name (results are cached per name) and a counted probe. */
function fake(present: boolean): Prerequisite & { probes: number } {
  const p = {
    name: `fake tool ${++n}`,
    install: 'apt-get install -y fake-tool',
    probes: 0,
    probe: () => {
      p.probes++;
      return present;
    },
  };
  return p;
}

afterEach(() => vi.restoreAllMocks());

describe('requirePrerequisite', () => {
  it('present: true, nothing printed, probed once', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const p = fake(true);
    expect(requirePrerequisite(p, {})).toBe(true);
    expect(requirePrerequisite(p, { CI: 'true' })).toBe(true);
    expect(p.probes).toBe(1);
    expect(warn).not.toHaveBeenCalled();
  });

  it('missing outside CI: false, one loud line naming it and how to install it', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const p = fake(false);
    expect(requirePrerequisite(p, {})).toBe(false);
    expect(requirePrerequisite(p, {})).toBe(false);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]?.[0]).toContain(skipLine(p));
    expect(skipLine(p)).toContain('SKIPPING');
    expect(skipLine(p)).toContain(p.name);
    expect(skipLine(p)).toContain(p.install);
  });

  it('missing under CI=true: throws, so the suite fails', () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const p = fake(false);
    expect(() => requirePrerequisite(p, { CI: 'true' })).toThrow(/missing and CI=true/);
  });

  it('runs: exit status of a real command, never throwing', () => {
    expect(runs(process.execPath, ['-e', ''])).toBe(true);
    expect(runs(process.execPath, ['-e', 'process.exit(3)'])).toBe(false);
    expect(runs('/nonexistent/command', [])).toBe(false);
  });
});
