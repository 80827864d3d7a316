# Amane Relay. Every target installs what it needs on a fresh Debian machine with Swift.
SWIFT ?= swift
APT_PACKAGES ?= libsqlite3-dev curl openssl

.PHONY: all deps build test run bench clean

all: build

# Installs missing Debian packages: as root directly, else through sudo, else prints the command.
deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
		else echo "Missing packages:$$missing"; echo "Run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq$$missing; \
	fi

build: deps
	$(SWIFT) build

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Starts the daemon on its embedded default: SQLite and a development CA in .amane-dev/.
run: deps
	$(SWIFT) build --product amane-relayd
	.build/debug/amane-relayd serve --dev

bench: deps
	$(SWIFT) build -c release --product amane-relay-bench
	.build/release/amane-relay-bench crypto
	.build/release/amane-relay-bench store

clean:
	rm -rf .build
