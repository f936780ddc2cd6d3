// Switchboard wire contract v1 for k6 users (k6 >= 1.1).
//
//   k6 run loadtest/k6/switchboard.js
//   k6 run -e RATE=50 -e AGENTS=20 -e DURATION=30s -e URL=ws://127.0.0.1:8080 loadtest/k6/switchboard.js
//
// Two scenarios run side by side:
//   agents    — AGENTS virtual users, one agent desktop socket each: log in,
//               accept every offer after ACCEPT_MS, complete after HANDLE_MS.
//   customers — an open-loop constant-arrival-rate of RATE conversations/s;
//               each iteration is one gateway socket that opens a conversation,
//               waits for `conversation.assigned`, and abandons after PATIENCE_MS.
//
// Metrics: open_ack_ms (open → ack), open_to_assigned_ms (open → assigned
// push), offer_waited_ms (the engine's own waited_ms on each offer),
// conversations_assigned / _abandoned, error_frames. Thresholds make k6 exit
// non-zero (99) when missed. The Rust `switchboard-loadtest` does more
// (lost/duplicate/misroute checks, no coordinated omission on the agent side);
// this script is for teams that standardise on k6.
//
// Only 127.0.0.1 is allowed as a target.

import { WebSocket } from 'k6/experimental/websockets';
import { check, fail } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const URL = __ENV.URL || 'ws://127.0.0.1:8080';
const CONNECTOR_TOKEN = __ENV.CONNECTOR_TOKEN || 'dev-connector-token';
const AGENT_TOKEN = __ENV.AGENT_TOKEN || 'dev-agent-token';
const RATE = parseInt(__ENV.RATE || '20', 10);
const AGENTS = parseInt(__ENV.AGENTS || '10', 10);
const DURATION = __ENV.DURATION || '20s';
const ACCEPT_MS = parseInt(__ENV.ACCEPT_MS || '20', 10);
const HANDLE_MS = parseInt(__ENV.HANDLE_MS || '300', 10);
const PATIENCE_MS = parseInt(__ENV.PATIENCE_MS || '10000', 10);
const CHANNEL = __ENV.CHANNEL || 'chat';

if (!/^ws:\/\/127\.0\.0\.1(:\d+)?\/?$/.test(URL)) {
  fail(`refusing ${URL}: only ws://127.0.0.1:PORT is allowed`);
}
const BASE = URL.replace(/\/$/, '');

const openAck = new Trend('open_ack_ms', true);
const openToAssigned = new Trend('open_to_assigned_ms', true);
const offerWaited = new Trend('offer_waited_ms', true);
const assigned = new Counter('conversations_assigned');
const abandoned = new Counter('conversations_abandoned');
const completed = new Counter('conversations_completed');
const errorFrames = new Counter('error_frames');

// Agents stay connected a little longer than customers keep arriving.
function secs(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) return 20;
  const n = parseInt(m[1], 10);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'm' ? n * 60 : n;
}
const AGENT_SECS = secs(DURATION) + Math.ceil(PATIENCE_MS / 1000) + 5;

export const options = {
  scenarios: {
    agents: {
      executor: 'per-vu-iterations',
      vus: AGENTS,
      iterations: 1,
      maxDuration: `${AGENT_SECS + 10}s`,
      exec: 'agent',
    },
    customers: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      startTime: '2s', // let the agents log in first
      preAllocatedVUs: Math.max(10, RATE * 2),
      maxVUs: Math.max(50, RATE * 20),
      exec: 'customer',
    },
  },
  thresholds: {
    checks: ['rate>0.99'],
    error_frames: ['count<1'],
    open_ack_ms: ['p(99)<100'],
    open_to_assigned_ms: ['p(99)<1000'],
  },
};

function send(ws, frame) {
  ws.send(JSON.stringify(frame));
}

export function agent() {
  const agentId = `k6-agent-${exec.vu.idInTest}`;
  const ws = new WebSocket(`${BASE}/v1/ws?token=${AGENT_TOKEN}`);
  let req = 0;
  let closing = false;
  const pending = {};
  ws.onopen = () => {
    pending[++req] = 'login';
    send(ws, { type: 'agent.login', req_id: req, agent_id: agentId, skills: {}, capacity: { chat: 3, voice: 1, sms: 3 } });
    setTimeout(() => {
      closing = true;
      ws.close();
    }, AGENT_SECS * 1000);
  };
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'offer') {
      offerWaited.add(f.waited_ms);
      setTimeout(() => {
        if (closing) return;
        pending[++req] = { kind: 'accept', conversation: f.conversation_id };
        send(ws, { type: 'offer.accept', req_id: req, offer_id: f.offer_id });
      }, ACCEPT_MS);
    } else if (f.type === 'ack') {
      const p = pending[f.req_id];
      delete pending[f.req_id];
      if (p === 'login') {
        check(f, { 'agent logged in': () => true });
      } else if (p && p.kind === 'accept') {
        setTimeout(() => {
          if (closing) return;
          pending[++req] = 'complete';
          send(ws, { type: 'conversation.complete', req_id: req, conversation_id: p.conversation });
        }, HANDLE_MS);
      } else if (p === 'complete') {
        completed.add(1);
      }
    } else if (f.type === 'agent.status' && f.status === 'away') {
      pending[++req] = 'status';
      send(ws, { type: 'agent.status', req_id: req, status: 'available' });
    } else if (f.type === 'error') {
      const p = pending[f.req_id];
      delete pending[f.req_id];
      // An accept that lost the race to an abandon is expected.
      if (!(p && p.kind === 'accept')) {
        errorFrames.add(1, { code: f.code });
        console.warn(`agent ${agentId}: error frame for ${JSON.stringify(p)}: ${e.data}`);
      }
    }
  };
  ws.onerror = (e) => {
    // After our own close, k6 reports e.g. "close sent" for a late ping: not an error.
    if (closing) return;
    errorFrames.add(1, { code: 'socket' });
    console.warn(`agent ${agentId}: socket error: ${e.error}`);
  };
}

export function customer() {
  const customerId = `k6-cust-${exec.scenario.iterationInTest}-${Date.now()}`;
  const ws = new WebSocket(`${BASE}/v1/ws?token=${CONNECTOR_TOKEN}`);
  let opened = 0;
  let conversation = null;
  let done = false;
  let patience = null;
  let closing = false;
  const finish = () => {
    if (patience !== null) clearTimeout(patience);
    closing = true;
    ws.close();
  };
  ws.onopen = () => {
    opened = Date.now();
    send(ws, { type: 'conversation.open', req_id: 1, customer_id: customerId, channel: CHANNEL });
    patience = setTimeout(() => {
      patience = null;
      if (!done && conversation) {
        send(ws, { type: 'conversation.abandon', req_id: 2, conversation_id: conversation });
      } else {
        finish();
      }
    }, PATIENCE_MS);
  };
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'ack' && f.req_id === 1) {
      openAck.add(Date.now() - opened);
      conversation = f.conversation_id;
      check(f, { 'open acknowledged with an id': (x) => typeof x.conversation_id === 'string' });
    } else if (f.type === 'ack' && f.req_id === 2) {
      abandoned.add(1);
      finish();
    } else if (f.type === 'conversation.assigned' && f.conversation_id === conversation && !done) {
      done = true;
      openToAssigned.add(Date.now() - opened);
      assigned.add(1);
      finish();
    } else if (f.type === 'error') {
      // An abandon racing the assignment is expected.
      if (f.req_id !== 2) {
        errorFrames.add(1, { code: f.code });
        console.warn(`customer ${customerId}: error frame: ${e.data}`);
      }
      finish();
    }
  };
  ws.onerror = (e) => {
    if (closing) return;
    errorFrames.add(1, { code: 'socket' });
    console.warn(`customer ${customerId}: socket error: ${e.error}`);
  };
}
