// Small helpers shared by every layer; this folder depends on nothing of the project's.
export type { AbortWatcher } from './abort-watch.js';
export { releaseAbort, unwatchAbort, watchAbort } from './abort-watch.js';
export type { Clock, Timer, TimerOptions } from './clock.js';
export { systemClock } from './clock.js';
export type { FakeClock } from './fake-clock.js';
export { createFakeClock } from './fake-clock.js';
export type {
  FlagsFileContent,
  FlagsFileContentWatcher,
  FlagsFileParse,
  FlagsFileWatcherOptions,
} from './flags-file.js';
export {
  contentProblemCode,
  DEFAULT_FLAGS_FILE_POLL_INTERVAL_MS,
  MAX_FLAGS_FILE_BYTES,
  parseFlagsFile,
  parseJsonObjectFile,
  watchFlagsFileContent,
} from './flags-file.js';
export type { LinkedSignal } from './link-signals.js';
export { linkSignals } from './link-signals.js';
export { raceSignal } from './race-signal.js';
export type { SleepOptions } from './sleep.js';
export { sleep } from './sleep.js';
export { sumMetric, withLabels } from './sum-metric.js';
export type {
  CounterCell,
  HistogramCell,
  TallyCounterOptions,
  TallyHistogramOptions,
} from './tally.js';
export { TallyCounter, TallyHistogram } from './tally.js';
export type { WriteWindow, WriteWindowOptions } from './write-window.js';
export { createWriteWindow } from './write-window.js';
