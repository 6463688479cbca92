// The scenarios, by name.

import { chat } from "./chat.js";
import { direct } from "./direct.js";
import { idle } from "./idle.js";
import type { Scenario } from "./scenario.js";
import { sparse } from "./sparse.js";
import { ticker } from "./ticker.js";

export const SCENARIOS: readonly Scenario[] = [chat, ticker, sparse, direct, idle];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((scenario) => scenario.name === name);
}
