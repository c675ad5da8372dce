// Package httpapi is the HTTP enqueue service, a thin adapter over the
// packages that hold the logic: tenant routes that enqueue invoice work
// (tasks.Enqueuer), report task state and serve rendered PDFs (invoice);
// admin routes that provision, suspend, resume and delete tenants, issue
// keys and fan out migrations (tenancy.Service); the asynq dashboard; and
// health, readiness and metrics endpoints.
//
// # Tenant routes
//
//	POST /v1/invoices/{id}/pdf        202 {"task_id","queue","state","existing"}
//	POST /v1/invoices/{id}/reminders  202 {"task_id","queue","state","existing"}
//	GET  /v1/tasks/{task_id}          200 {"task_id","type","state","retried","last_error","result"}
//	GET  /v1/invoices/{id}/pdf        200 application/pdf (ETag, If-None-Match -> 304; the body gets the
//	                                  write timeout plus a second per 32 KiB; HEAD: the headers alone,
//	                                  the body not read); 404 when not rendered, missing from the
//	                                  store, or stored corrupt (not the recorded file and no whole PDF)
//
// The tenant comes from the Host header ({slug}{DomainSuffix}, port ignored,
// ASCII letters case-insensitive; a Host with any byte outside ASCII names
// no tenant, also when it comes from an absolute-form request target). When Options.AllowTenantHeader is set (development
// only), a Host that is not of that form (localhost, an IP literal,
// another domain, a reserved label) falls back to the X-Tenant header; a
// Host of that form always decides, also when no tenant has its slug (404,
// whatever X-Tenant says). A request passes these checks in
// order, so that nothing about a tenant is revealed before the caller proves
// a key, and random subdomains without a key never reach the catalog:
//
//  0. The client address has used up its failed authentications (see
//     below): 429 with Retry-After, before anything is looked up.
//  1. Host (or X-Tenant) is not exactly one valid slug label under the
//     suffix (other domains, nested labels, IP literals, paths, NUL, empty,
//     bytes outside ASCII):
//     400 "invalid tenant host".
//  2. No "Authorization: Bearer <key>" or a key that cannot be a key:
//     401 with WWW-Authenticate: Bearer.
//  3. The key is unknown or revoked: 401 "invalid API key", whatever the
//     subdomain (a caller without a valid key cannot tell which exist).
//  4. The slug names no tenant, or a tenant being deleted: 404
//     "unknown tenant" (the catalog cache answers repeated unknown slugs);
//     the key belongs to another tenant: 403.
//  5. The tenant is suspended: 403; still provisioning: 409 (the status
//     policy, tenantctx.Status.Decide, makes its work wait).
//
// Steps 3 to 5 run again right before a request enqueues, serves a PDF,
// answers a task's state, or answers that invoices or a task are missing
// (it may have waited for the tenant's tables or Redis meanwhile): a key
// revoked, or a tenant suspended or deleted, while it was in flight
// enqueues nothing, downloads nothing and learns no task's state nor
// which invoices or tasks the tenant lacks: at once in the process that
// made the change, and in the others once its cache invalidation reached
// them (the checks read the catalog cache, whose in-process layer is
// dropped by that message, or expires within a second).
//
// Every failure of steps 2 to 4 with a key presented counts against the
// client address (the peer, or Options.ClientIPHeader behind a proxy; IPv6
// per /64): Options.AuthFailuresPerMinute of them per minute, in a burst
// or spread out, then 429 until a token refills. So 500 requests with
// random keys or random subdomains cost about 20 catalog queries, not 500.
// A key that authenticates is handed to Options.KeyUsage (its last use,
// written in batches).
//
// An invoice id is a positive int64 written in decimal digits only (no sign,
// exponent or spaces); anything else is 400. An invoice the tenant does not
// have is 404 "invoice not found", checked in the tenant's own schema
// before anything is enqueued. A task id of another tenant is 404, exactly
// like an unknown one. A task asynq no longer has (its archive is capped
// per queue) is answered from the tenant's own records of archived tasks
// (tasks.TaskRecords).
//
// The database units of work of one tenant's requests (the invoice
// checks of enqueues, PDF look-ups) run at most Options.TenantDBConns at
// once in a process; more wait, in order, for one of that tenant's, up to
// Options.RequestTimeout (then 503), never for another tenant's: a tenant
// flooding the service, or one whose tables are locked, cannot hold every
// connection of the pool.
//
// What a tenant sees of a task's error is a stable, safe reason, never the
// error message (which may hold SQL, paths, the mail server's user and
// host): for an archived task the reason the worker recorded
// (worker.PublicReason: "invoice not found", "invoice cannot be rendered",
// "invalid task", "timed out", "task refused", "failed after retries"; or
// "failed" without a record; "archived by an operator" for one archived
// from the dashboard before any attempt failed), "temporary failure, will
// be retried" otherwise. Operators see the message in the logs and the dashboard.
//
// # Admin routes
//
// Admin routes answer on any Host and need "Authorization: Bearer
// <ADMIN_TOKEN>" (compared in constant time over SHA-256 digests, so the
// token's length does not leak either). With an empty Options.AdminToken
// every admin route, the dashboard included, answers 404: disabled, not
// open. A missing or wrong token is 401; wrong tokens count against the
// client address like failed tenant keys (429 past the limit, also for the
// right token).
//
//	POST   /admin/tenants                     202 {"id","slug","status":"provisioning","api_key","database","time_zone","task_id"}
//	GET    /admin/tenants                     200 {"tenants":[...],"next_after":"..."} (?status=&after=&limit=)
//	GET    /admin/tenants/{id}                200 tenant
//	POST   /admin/tenants/{id}/suspend        200 tenant (409 when not active or suspended)
//	POST   /admin/tenants/{id}/resume         200 tenant (409 when not suspended or active)
//	GET    /admin/tenants/{id}/keys           200 {"keys":[{"id","prefix","created_at","last_used_at","revoked_at"}]}
//	POST   /admin/tenants/{id}/keys           201 {"id","api_key"} (409 while being deleted)
//	DELETE /admin/tenants/{id}/keys/{key_id}  204 (404 for a key the tenant does not have)
//	DELETE /admin/tenants/{id}                202 {"id","slug","status":"deleting","task_id"} (503 when a waiting cap refuses the destroy: retry)
//	PUT    /admin/tenants/{id}/limits         200 tenant ({"plan","weight","max_running","max_waiting"}; 0: the plan's)
//	PUT    /admin/tenants/{id}/time_zone      200 tenant ({"time_zone"}: an IANA name; 409 while being deleted)
//	GET    /admin/tenants/{id}/queue          200 the tenant's backlog, admitted and running tasks (fair dispatch)
//	POST   /admin/tenants/{id}/queue/pause    200 {"paused":true,"moved_back":N} (409 while being deleted or provisioned)
//	POST   /admin/tenants/{id}/queue/resume   200 {"paused":false} (409 while being deleted)
//	POST   /admin/tenants/{id}/queue/drain    200 {"discarded","waiting","admitted","parked","retrying","scheduled"} (409 while being deleted or provisioned)
//	GET    /admin/queues                      200 {"queues":[fair.Overview...]} (?top=1..100, default 10)
//	POST   /admin/migrations                  202 {"enqueued": N} (503 past the deadline or a waiting cap: how many were)
//	       /admin/dashboard/                  asynqmon (Bearer, or Basic with the token as password)
//	                                          (api/redis_info: 200 "info_refused":true when the Redis user may not run INFO)
//
// The queue routes answer 409 without fair dispatch (FAIR_DISPATCH=false):
// there are no backlogs then.
//
// The query strings of GET /admin/tenants and GET /admin/queues are 400
// when they cannot be parsed, name a parameter twice, or name one the
// route does not take (a mistyped filter would otherwise list everything).
// A route that changes something (every POST, PUT and DELETE, tenant and
// admin routes alike) takes no parameter: any query string is 400 naming
// it, after authentication and before the route changes anything (an
// ignored "?type=" of a drain would discard the whole backlog, an ignored
// "?dry_run=1" of a deletion delete the tenant).
//
// A key is never listed, only its first characters. A revoked key, a
// suspended or a deleted tenant is refused by every replica within a
// second: the catalog cache publishes the invalidation to every replica's
// in-process layer (which keeps entries 1 s at most in any case). When the
// change is saved but the invalidation cannot be applied in Redis or
// published (storage.ErrInvalidationFailed), the suspend, resume, delete,
// limits or revoke call answers 503 with Retry-After instead of success: other
// replicas could otherwise accept the key for the Redis TTL. Retrying is
// safe and propagates again.
//
// Every admin route but the dashboard is bounded by
// Options.AdminRequestTimeout: its catalog, database and Redis calls end
// at that deadline (a Redis client made with ContextTimeoutEnabled stops a
// stalled read there; the tenancy service stops waiting for the
// dispatcher's calls and for what completes a saved change, which go on
// without the request). Past it the route answers 503 with Retry-After and
// {"error": "<operation> did not complete within <timeout> (...); <what
// was kept>"}: nothing (reads; a provisioning that failed with time left,
// which deletes what it had created before it answers, unless that fails
// too and the tenant is left in provisioning), created and being deleted
// again without the request (a provisioning cut at the deadline), saved
// and completing without the request (a status change's hold or release,
// a deletion's destroy, limits, a queue's audit entry, a cache
// invalidation), unknown (a change cut before the catalog answered, a
// pause), no key (a new key: the key sent is withdrawn, or still being
// withdrawn without the request, tenancy.ErrKeyBeingWithdrawn; only if the
// withdrawal failed may one be left), or partly done (migrations: how many
// were enqueued; a drain).
// A saved change whose invalidation failed keeps answering as not
// propagated (above). The answer comes by the deadline: what must still
// end after it goes on without the request, and the answer says so (a
// saved change whose cache invalidation is still under way,
// storage.ErrInvalidationPending: saved, still propagating; a
// provisioning whose clean-up is: the tenant created is being deleted
// again; a key issuance whose withdrawal is: the key is being withdrawn).
//
// Every admin answer, the dashboard's included, carries X-Frame-Options:
// DENY and Content-Security-Policy: frame-ancestors 'none'. Writes (any
// method but GET, HEAD, OPTIONS) from another origin are refused with 403:
// Sec-Fetch-Site other than same-origin or none, an Origin that is not the
// Host, or (without either) a Referer naming another host. A browser holding
// the dashboard's Basic credentials would otherwise post another site's
// forms with them.
//
// POST /admin/tenants takes {"slug","name","plan","database","time_zone"}:
// unknown fields, a field given twice (parsers disagree on which counts;
// every JSON body is checked so, for bytes that are not UTF-8, and for a
// \u escape of a lone UTF-16 surrogate, which names no character), a
// body that is not one JSON object, an
// invalid or reserved slug are 400, and so are an unknown plan or
// database and a time zone the embedded zone database does not know ("",
// "Local"); a taken slug is 409. An empty name defaults to the slug, an
// empty plan to "free", an empty database to the one with the fewest
// tenants and an absent time_zone to UTC. The CLI, the dev
// stack and the bench provision and migrate through the same
// tenancy.Service.
//
// # Everything else
//
// GET /healthz is liveness (200 while the process serves), GET /readyz pings
// Redis (and checks that it takes writes: readiness.Redis) and PostgreSQL
// (2 s each) and answers 503 naming the failing dependency but not its
// error (logged instead), GET /metrics is Prometheus. Every error, including the mux's
// own 404 and 405, is JSON {"error":"..."}, except those of the dashboard
// past its authentication (asynqmon answers its own, in plain text). Every JSON answer carries
// Cache-Control: no-store (some show an API key once, others a tenant's
// data) and X-Content-Type-Options: nosniff. Bodies are limited to 1 MiB
// (413 beyond: at once when Content-Length says so, else when a route that
// takes a body reads past it; routes without a body never read one); a
// body the server's read timeout cuts off is 408, and nothing of the read
// error (it names socket addresses) reaches the client. The time a body
// takes to arrive is the client's: a route's deadline (RequestTimeout,
// AdminRequestTimeout) and the write deadline move by it once the body is
// read. An answer written
// before the request's body was read to its end (a 405, 404, 401 or 403,
// a 429 or 503 given before the body is parsed) carries Connection: close
// and goes out at once, without waiting for the rest of the body; the
// connection then closes, after taking for at most a second what the
// client still sends. A request whose body was read, or that has none,
// keeps its connection.
// Every response carries X-Request-Id (a sane incoming one is kept,
// otherwise one is generated); every request is logged once with its
// route pattern, status, duration, request id and tenant id when known, and
// counted by route pattern and status (never by tenant: unbounded labels).
// A panic in a handler is logged with its stack and answered 500.
package httpapi
