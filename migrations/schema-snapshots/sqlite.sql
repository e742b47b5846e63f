-- flask-rollback schema snapshot
-- format: 1
-- backend: sqlite
-- bind: default
-- migrations: 3
-- heads: 1bee7f2580b9 a86a3d95c5c4
-- digest: 4b71cdccaa7da7339871aa4b8571447fec66ea50f8f73b4ba5cca488f4831d13
-- body: d2577480d53774ea1ca1e146afab75089625f7071c3429c77cbaf5fa7dd0cb1e
-- Made by 'flask db snapshot' (and makemigrations) from the migrations: do not edit, an
-- edited snapshot is ignored. 'flask db upgrade' loads it into an empty database.

PRAGMA defer_foreign_keys = ON;
CREATE TABLE order_lines (
	id INTEGER NOT NULL, 
	order_id INTEGER NOT NULL, 
	product_id INTEGER NOT NULL, 
	quantity INTEGER DEFAULT 1 NOT NULL, 
	CONSTRAINT pk_order_lines PRIMARY KEY (id), 
	CONSTRAINT fk_order_lines_order_id_orders FOREIGN KEY(order_id) REFERENCES orders (id), 
	CONSTRAINT fk_order_lines_product_id_products FOREIGN KEY(product_id) REFERENCES products (id)
);
CREATE TABLE orders (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	CONSTRAINT pk_orders PRIMARY KEY (id), 
	CONSTRAINT fk_orders_user_id_users FOREIGN KEY(user_id) REFERENCES users (id)
);
CREATE TABLE post_tags (
	post_id INTEGER NOT NULL, 
	tag_id INTEGER NOT NULL, 
	CONSTRAINT pk_post_tags PRIMARY KEY (post_id, tag_id), 
	CONSTRAINT fk_post_tags_post_id_posts FOREIGN KEY(post_id) REFERENCES posts (id), 
	CONSTRAINT fk_post_tags_tag_id_tags FOREIGN KEY(tag_id) REFERENCES tags (id)
);
CREATE TABLE posts (
	id INTEGER NOT NULL, 
	title VARCHAR(200) NOT NULL, 
	body TEXT NOT NULL, 
	author_id INTEGER NOT NULL, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	CONSTRAINT pk_posts PRIMARY KEY (id), 
	CONSTRAINT fk_posts_author_id_users FOREIGN KEY(author_id) REFERENCES users (id)
);
CREATE TABLE products (
	id INTEGER NOT NULL, 
	sku VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	price_cents INTEGER NOT NULL, 
	CONSTRAINT pk_products PRIMARY KEY (id), 
	CONSTRAINT uq_products_sku UNIQUE (sku)
);
CREATE TABLE tags (
	id INTEGER NOT NULL, 
	name VARCHAR(50) NOT NULL, 
	CONSTRAINT pk_tags PRIMARY KEY (id), 
	CONSTRAINT uq_tags_name UNIQUE (name)
);
CREATE TABLE users (
	id INTEGER NOT NULL, 
	email VARCHAR(255) NOT NULL, 
	name VARCHAR(120), 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	CONSTRAINT pk_users PRIMARY KEY (id), 
	CONSTRAINT uq_users_email UNIQUE (email)
);
