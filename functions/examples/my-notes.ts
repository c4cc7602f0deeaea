// Reads the caller's rows through the project's data API: the caller's own
// token is forwarded, so Row Level Security decides what comes back.
export default {
  async fetch(req: Request): Promise<Response> {
    const url = Deno.env.get("FERROBASE_URL");
    const anon = Deno.env.get("FERROBASE_ANON_KEY");
    const auth = req.headers.get("Authorization");
    if (!url || !anon || !auth) {
      return Response.json({ error: "sign in first" }, { status: 401 });
    }
    const res = await fetch(`${url}/rest/v1/notes?select=*`, {
      headers: { apikey: anon, Authorization: auth },
    });
    return new Response(res.body, {
      status: res.status,
      headers: { "content-type": "application/json" },
    });
  },
};
