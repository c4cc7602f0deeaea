-- Per-project CORS: the origins browsers may call a project's APIs from
-- (`*`, exact origins such as https://app.example.com, or one-label
-- wildcards such as https://*.example.com). NULL means the server-wide
-- FERROBASE_CORS_ORIGINS applies; an empty list allows no other origin.
alter table projects add column cors_origins text[];
