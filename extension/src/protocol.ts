// Generated from nbflow/jupyter/protocol.json by `python -m nbflow.jupyter._protocol`: do not edit.
// nbflow monitor protocol: The JSON a run monitor's kernel side (nbflow/jupyter/_monitor_model.py,
// _widget.py) and its front-end (extension/src/) exchange. Written once, here: extension/src/protocol.ts is
// generated from it (python -m nbflow.jupyter._protocol), and the tests check what the kernel really sends
// against it. Keys are short where a message carries one per task run. Times are Unix seconds rounded to
// milliseconds.

/** Version of the protocol: a front-end ignores a snapshot of another version. */
export const PROTOCOL = 1;

/** The kind of a state; several state names share one type (Cached is COMPLETED). */
export type StateType = "SCHEDULED" | "PENDING" | "RUNNING" | "COMPLETED" | "FAILED" | "CRASHED" | "CANCELLED";

/** Unix seconds (rounded to milliseconds), or null when not known yet. */
export type Time = number | null;

/** How many runs are in each state, by state name. */
export type Counts = Record<string, number>;

/** The watched flow run itself. */
export interface RunHeader {
  /** Flow run id. */
  id: string;
  /** Flow run name ("nimble-falcon"); empty until the run is known. */
  name: string;
  /** Flow name. */
  flow: string;
  /** State name ("Completed", "TimedOut"). */
  state: string;
  /** State type. */
  type: StateType;
  /** State message. */
  message: string | null;
  /** When the run started. */
  start: Time;
  /** When the run ended. */
  end: Time;
}

/** A node of the graph: one task run or subflow run, or (collapsed) every run of one task or subflow. */
export interface GraphNode {
  /** A run id, "k:<task key>" (a task's group) or "f:<flow name>" (a subflow's group). */
  id: string;
  /** What the node shows: the task run name, the subflow's flow name, or the task name of a group. */
  label: string;
  /** What the node stands for. */
  kind: "task" | "flow" | "group";
}

/** The graph's structure, sent only when it changed. */
export interface Graph {
  /** Version: grows with every structure sent, so the front-end lays the graph out again only when it changed. */
  v: number;
  /** One node per task (groups) instead of one per run, for good, past COLLAPSE_AT nodes. */
  collapsed: boolean;
  /** The nodes, in the order they appeared. */
  nodes: GraphNode[];
  /** Data dependencies between nodes: [upstream node id, downstream node id]. */
  edges: [upstream: string, downstream: string][];
}

/** The state of one graph node: its run's state (s, t), or counts by state (c) for groups and subflows. Short keys: one per node in every message. */
export interface NodeState {
  /** State name of the node's run. */
  s?: string;
  /** State type of the node's run. */
  t?: StateType;
  /** Attempts: how many times the run started (retries included). */
  a?: number;
  /** When the run started. */
  st?: number;
  /** When the run ended. */
  en?: number;
  /** The first 16 characters of the run's cache key. */
  ck?: string;
  /** Why the run failed, in one line ("ValueError: bad row"). */
  err?: string;
  /** Runs by state name: of a group's task runs, of a subflow's own task runs. */
  c?: Counts;
}

/** One line of the state log: a transition or a log line. */
export type LogEntry = [n: number, timestamp: number, runId: string, runName: string, kind: "state" | "log", level: number, text: string];

/** One log line of a run, in its detail panel. */
export type RunLine = [timestamp: number, level: number, message: string];

/** One run in the list of a group's or subflow's detail panel (failed and running first). */
export interface Member {
  /** Run id. */
  id: string;
  /** Run name. */
  name: string;
  /** State name. */
  s: string;
  /** State type. */
  t: StateType;
  /** Duration in seconds, once the run ended. */
  d?: number;
  /** Why it failed, in one line. */
  err?: string;
}

/** The detail panel of a node or run: state, timing, attempts, cache, logs and traceback; for a group, its counts and runs. */
export interface Detail {
  /** Node or run id. */
  id: string;
  /** A task run, a subflow run, a group node, or the watched flow run itself. */
  kind: "task" | "flow" | "group" | "run";
  /** Run name, or the group's label. */
  name: string;
  /** Task name (flow name for a subflow run). */
  task?: string;
  /** Flow name (the watched run only). */
  flow?: string;
  /** State name. */
  state?: string;
  /** State type. */
  type?: StateType;
  /** State message. */
  message?: string | null;
  /** When the run started. */
  start?: Time;
  /** When the run ended. */
  end?: Time;
  /** How many times the run started. */
  attempts?: number;
  /** The run's whole cache key. */
  cache_key?: string | null;
  /** Whether the result came from the cache. */
  cache?: "hit" | "miss" | null;
  /** The run's own recent log lines. */
  logs?: RunLine[];
  /** Why the run failed, in one line. */
  error?: string;
  /** The failure's traceback, without nbflow's engine frames. */
  traceback?: string;
  /** Runs by state name (a group's runs, a subflow's task runs). */
  counts?: Counts;
  /** How many runs the group has (members lists at most DETAIL_MEMBERS). */
  total?: number;
  /** The runs of a group or subflow, failed and running first. */
  members?: Member[];
}

/** Task runs by state name (subflows' included): [state type, count]. */
export type StateCounts = Record<string, [type: StateType, count: number]>;

/** Kernel to front-end: everything the monitor shows (a keyframe now and then, and the final picture, also kept in the widget's synced snapshot trait). */
export interface Snapshot {
  /** Message kind. */
  kind: "snapshot";
  /** This schema's version; a front-end ignores a snapshot of another version. */
  protocol: number;
  /** Message number: a delta that does not follow the last message means one went missing. */
  seq: number;
  /** The kernel's clock, for the durations of running runs. */
  now: number;
  /** The run ended: the last picture, nothing follows. */
  final: boolean;
  /** The watched flow run. */
  run: RunHeader;
  /** Task runs by state. */
  counts: StateCounts;
  /** The graph's structure. */
  graph: Graph;
  /** The state of every node, by node id. */
  nodes: Record<string, NodeState>;
  /** The latest state log entries. */
  log: LogEntry[];
  /** State log entries since the last message that this one does not carry. */
  skipped: number;
  /** The final picture only: the detail panel of every run node, by node id. */
  details?: Record<string, Detail>;
}

/** Kernel to front-end: what changed since the last message (at most one every 0.2 s). */
export interface Delta {
  /** Message kind. */
  kind: "delta";
  /** Message number. */
  seq: number;
  /** The kernel's clock. */
  now: number;
  /** The watched flow run, if it changed. */
  run?: RunHeader;
  /** Task runs by state, if they changed. */
  counts?: StateCounts;
  /** The graph's structure, if it changed. */
  graph?: Graph;
  /** The nodes whose state changed, by node id. */
  nodes?: Record<string, NodeState>;
  /** New state log entries (at most WIRE_LOG_LIMIT). */
  log?: LogEntry[];
  /** New entries of a burst that this message does not carry. */
  skipped?: number;
}

/** Kernel to front-end: the answer to a DetailRequest. */
export interface DetailReply {
  /** Message kind. */
  kind: "detail";
  /** The node or run id asked about. */
  id: string;
  /** Its detail panel; null for an id the monitor does not know. */
  detail: Detail | null;
}

/** Kernel to front-end: Graphviz compiled to WASM, as an ES module; once per kernel, never as widget state. */
export interface GraphvizSource {
  /** Message kind. */
  kind: "graphviz";
  /** The module's JavaScript source. */
  source: string;
}

/** Every custom message the kernel sends to the front-end. */
export type KernelMessage = Snapshot | Delta | DetailReply | GraphvizSource;

/** Front-end to kernel: send the detail panel of this node or run. */
export interface DetailRequest {
  /** Message kind. */
  kind: "detail";
  /** A node id, or a run id (a group's member, the watched run). */
  id: string;
}

/** Front-end to kernel: a page that missed the Graphviz module asks for it (once). */
export interface GraphvizRequest {
  /** Message kind. */
  kind: "graphviz?";
}

/** Every custom message the front-end sends to the kernel. */
export type FrontEndMessage = DetailRequest | GraphvizRequest;

/** [fill, stroke] CSS colours. */
export type Colours = [fill: string, stroke: string];

/** The widget's palette trait: colours per state name, and per state type as a fallback (one definition, shared with the static SVG). */
export interface Palette {
  /** By state name. */
  names: Record<string, Colours>;
  /** By state type. */
  types: Record<string, Colours>;
}
