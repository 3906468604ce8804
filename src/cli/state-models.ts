/**
 * The state models the inspection commands can decode with (`inspect --model`, `tail --decode
 * --model`): the SDK's default persist-like model and the demo's counter model.
 */
import { persistStateModel, type StateModel } from '../shard-state/index.js';
import { demoModel } from './demo-model.js';

export const CLI_MODELS: Readonly<Record<string, StateModel<unknown, unknown>>> = {
  persist: persistStateModel as StateModel<unknown, unknown>,
  demo: demoModel as StateModel<unknown, unknown>,
};

/** The default: the SDK's default state model. */
export const DEFAULT_CLI_MODEL = 'persist';
