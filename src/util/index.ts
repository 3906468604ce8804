// Small helpers shared by every layer; this folder depends on nothing of the project's.
export { raceSignal } from './race-signal.js';
export { sumMetric } from './sum-metric.js';
