// The JSON the kernel sends (nbflow/jupyter/_monitor_model.py is the other half of this contract).

export const PROTOCOL = 1;

export interface RunHeader {
  id: string;
  name: string;
  flow: string;
  state: string;
  type: string;
  message: string | null;
  start: number | null;
  end: number | null;
}

export interface GraphNode {
  id: string;
  label: string;
  kind: "task" | "flow" | "group";
  n?: number;
}

export interface Graph {
  v: number;
  collapsed: boolean;
  nodes: GraphNode[];
  edges: [string, string][];
}

/** State of one view node: a run's state (s, t), or counts by state (c) for groups and subflows. */
export interface NodeState {
  s?: string;
  t?: string;
  a?: number;
  st?: number;
  en?: number;
  ck?: string;
  err?: string;
  c?: Record<string, number>;
}

/** [n, timestamp, run id, run name, "state" | "log", level, text] */
export type LogEntry = [number, number, string, string, string, number, string];

export interface Detail {
  id: string;
  kind: "task" | "flow" | "group" | "run";
  name: string;
  task?: string;
  state?: string;
  type?: string;
  message?: string | null;
  start?: number | null;
  end?: number | null;
  attempts?: number;
  cache_key?: string | null;
  cache?: "hit" | "miss" | null;
  logs?: [number, number, string][];
  error?: string;
  traceback?: string;
  counts?: Record<string, number>;
  total?: number;
  members?: { id: string; name: string; s: string; t: string; d?: number; err?: string }[];
}

export interface Snapshot {
  kind: "snapshot";
  protocol: number;
  seq: number;
  now: number;
  final: boolean;
  run: RunHeader;
  counts: Record<string, [string, number]>;
  graph: Graph;
  nodes: Record<string, NodeState>;
  log: LogEntry[];
  skipped?: number;
  details?: Record<string, Detail>;
}

export interface Delta {
  kind: "delta";
  seq: number;
  now: number;
  run?: RunHeader;
  counts?: Record<string, [string, number]>;
  graph?: Graph;
  nodes?: Record<string, NodeState>;
  log?: LogEntry[];
  skipped?: number;
}

export interface DetailReply {
  kind: "detail";
  id: string;
  detail: Detail | null;
}

export type KernelMessage = Snapshot | Delta | DetailReply;

/** Colours per state name, and per state type as a fallback: [fill, stroke]. */
export interface Palette {
  names: Record<string, [string, string]>;
  types: Record<string, [string, string]>;
}
