// crier-client/sse: the HTTP fallback for networks that block WebSocket, as a
// separate entry point so apps that never need it do not load it. Pass it to
// the client: `new CrierClient(url, { sse: SseSocket })`; the client falls back
// to it when a WebSocket cannot open (docs/protocol.md "HTTP fallback transport").

export { SseSocket } from "./sse-socket.js";
