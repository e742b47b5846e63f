.PHONY: install test demo docs

install:
	python3 -m pip install -e '.[postgres,test]'

test: install
	python3 -m pytest -q -p no:cacheprovider -n 2 tests

demo: install
	FLASK_APP=example_app python3 -m flask db apps && FLASK_APP=example_app python3 -m flask db upgrade && FLASK_APP=example_app python3 -m flask db showmigrations

# The documentation site (docs/, mkdocs.yml) into site/; any warning fails (broken links too).
docs:
	python3 -m mkdocs build --strict
