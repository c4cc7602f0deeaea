// Reference Node socket.io 4.8 server for `cargo xtask bench realtime`: the
// same event contract as Ferrobase's hub, minus persistence and
// authorization (subscribe = join a room, publish = broadcast to it).
// Usage: node realtime_bench_server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2]);
const http = createServer();
const io = new Server(http, { path: "/socket.io", serveClient: false, maxHttpBufferSize: 1e6 });
let seq = 0;
io.on("connection", (socket) => {
  socket.on("realtime:subscribe", (d, ack) => {
    socket.join(d.channel);
    if (typeof ack === "function") ack({ ok: true, channel: d.channel, presence: { members: [] } });
  });
  socket.on("realtime:publish", (d, ack) => {
    seq += 1;
    const meta = { channel: d.channel, messageId: String(seq), senderType: "anon", senderId: null, timestamp: new Date().toISOString() };
    io.to(d.channel).emit(d.event, { ...d.payload, meta });
    if (typeof ack === "function") ack({ ok: true, messageId: String(seq) });
  });
});
http.listen(port, "127.0.0.1", () => console.log(`listening ${port}`));
