// The smallest function: JSON hello, with the caller's role when there is one.
//
//   curl -X POST $FERROBASE_URL/functions/v1/hello -H "Authorization: Bearer $ANON_KEY" -d '{"name":"Ada"}'
Deno.serve(async (req: Request) => {
  const { name = "world" } = await req.json().catch(() => ({}));
  return Response.json({
    message: `Hello ${name}!`,
    role: req.headers.get("x-ferrobase-role"),
  });
});
