-- flask-rollback schema snapshot
-- format: 1
-- backend: sqlite
-- bind: analytics
-- migrations: 1
-- heads: f745a18f1d79
-- digest: c6c0e192ae9567654246526958e9f862ddb645116ee31b33e34b253f32da34bc
-- body: 57e9fccb36a29386ca203f85a467e000fdd6aa1a03fd94f0a401fa4350244bad
-- Made by 'flask db snapshot' (and makemigrations) from the migrations: do not edit, an
-- edited snapshot is ignored. 'flask db upgrade' loads it into an empty database.

PRAGMA defer_foreign_keys = ON;
CREATE TABLE page_views (
	id INTEGER NOT NULL, 
	path VARCHAR(255) NOT NULL, 
	user_id INTEGER, 
	viewed_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	CONSTRAINT pk_page_views PRIMARY KEY (id)
);
CREATE INDEX ix_page_views_path ON page_views (path);
