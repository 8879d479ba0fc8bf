// State colours. The kernel sends the palette (one definition, shared with the static SVG fallback).

import type { NodeState, Palette } from "./protocol";

export const DEFAULT_PALETTE: Palette = {
  names: {},
  types: {
    SCHEDULED: ["#e0e7ff", "#6366f1"],
    PENDING: ["#f3f4f6", "#9ca3af"],
    RUNNING: ["#bfdbfe", "#2563eb"],
    COMPLETED: ["#bbf7d0", "#16a34a"],
    FAILED: ["#fecaca", "#dc2626"],
    CRASHED: ["#f5d0fe", "#a21caf"],
    CANCELLED: ["#e5e7eb", "#4b5563"],
  },
};

export function colours(palette: Palette, name: string | undefined, type: string | undefined): [string, string] {
  return (name && palette.names[name]) || (type && palette.types[type]) || palette.types.PENDING;
}

/** The state a group (or a subflow's tasks) looks like as a whole: active first, then the worst end. */
export function dominant(counts: Record<string, number>, types: Record<string, string>): [string, string] {
  let total = 0;
  const byType: Record<string, number> = {};
  for (const [name, n] of Object.entries(counts)) {
    if (n <= 0) continue;
    total += n;
    const t = types[name] ?? "PENDING";
    byType[t] = (byType[t] ?? 0) + n;
  }
  if (!total) return ["Pending", "PENDING"];
  if (byType.RUNNING) return ["Running", "RUNNING"];
  if (byType.CRASHED) return ["Crashed", "CRASHED"];
  if (byType.FAILED) return ["Failed", "FAILED"];
  if (byType.CANCELLED) return ["Cancelled", "CANCELLED"];
  if (byType.COMPLETED === total) return counts.Cached === total ? ["Cached", "COMPLETED"] : ["Completed", "COMPLETED"];
  if (byType.COMPLETED) return ["Running", "RUNNING"]; // some done, the rest waiting: in progress
  return ["Pending", "PENDING"];
}

/** Order of states in bars and count chips: finished work first, then active, then waiting. */
export const STATE_ORDER = [
  "Completed", "Cached", "Failed", "TimedOut", "NotReady", "Crashed", "Cancelled",
  "Running", "Retrying", "Pending", "Scheduled",
];

export function sortStates(names: string[]): string[] {
  const rank = (n: string) => {
    const i = STATE_ORDER.indexOf(n);
    return i === -1 ? STATE_ORDER.length : i;
  };
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

export function nodeLook(state: NodeState | undefined, types: Record<string, string>): [string, string] {
  if (!state) return ["Pending", "PENDING"];
  if (state.s) return [state.s, state.t ?? "PENDING"];
  return dominant(state.c ?? {}, types);
}
