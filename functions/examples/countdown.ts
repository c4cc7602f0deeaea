// Streams a response: one line every 200 ms (server-sent events style).
export default {
  fetch(): Response {
    const encoder = new TextEncoder();
    let n = 5;
    const body = new ReadableStream({
      async pull(controller) {
        if (n === 0) return controller.close();
        controller.enqueue(encoder.encode(`data: ${n--}\n\n`));
        await new Promise((r) => setTimeout(r, 200));
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  },
};
