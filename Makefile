# Amane Relay. Every target installs what it needs on a fresh Debian machine with Swift.
SWIFT ?= swift
APT_PACKAGES ?= libsqlite3-dev curl openssl python3 python3-venv systemd
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DATADIR ?= $(PREFIX)/share
# Only an install onto this machine's own unit folders tells its systemd (never a DESTDIR or a scratch PREFIX).
SYSTEMD_LIVE = [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && case "$(UNITDIR)" in /etc/systemd/system|/usr/lib/systemd/system|/usr/local/lib/systemd/system|/lib/systemd/system) true;; *) false;; esac
RELEASE_BIN = .build/release
FUZZ_SECONDS ?= 60

.PHONY: all deps build test unit-tests deploy-tests run bench tls-audit fuzz install uninstall clean

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

test: unit-tests deploy-tests

# The tests that drive daemons and child processes run after the rest, so they do not starve them of threads,
# and each target's daemons apart from the other's, so that one daemon at a time has the CPU. Every phase runs
# even when one before it failed, so that one run shows every failure; the target fails if any phase did.
unit-tests: deps
	$(SWIFT) build --build-tests
	@failed=""; \
	$(SWIFT) test --skip-build --skip 'DaemonSuite(ForCLI)?/' || failed="$$failed unit"; \
	$(SWIFT) test --skip-build --filter 'DaemonSuite/' || failed="$$failed relay-daemon"; \
	$(SWIFT) test --skip-build --filter 'DaemonSuiteForCLI/' || failed="$$failed cli-daemon"; \
	if [ -n "$$failed" ]; then echo "Failed test phases:$$failed"; exit 1; fi

deploy-tests: deps
	Tests/Deploy/deploy-test.sh

# Starts the daemon on its embedded default: SQLite and a development CA in .amane-dev/.
run: deps
	$(SWIFT) build --product amane-relayd --product amane
	.build/debug/amane-relayd serve --dev

# Sealing, storage, then intake under load against nginx, crypto and storage baselines (writes bench-results.json).
bench: deps
	@$(MAKE) --no-print-directory deps APT_PACKAGES="nginx-light"
	$(SWIFT) build -c release --product amane-relay-bench
	$(SWIFT) build -c release --product amane-relayd
	$(RELEASE_BIN)/amane-relay-bench crypto
	$(RELEASE_BIN)/amane-relay-bench store
	$(RELEASE_BIN)/amane-relay-bench intake

tls-audit: deps
	$(SWIFT) build --product amane-relayd
	Tests/Deploy/tls-audit.sh

# libFuzzer with AddressSanitizer on the four parsers; FUZZ_SECONDS per target (default 60).
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) Tests/Fuzz/run.sh

install: deps
	$(SWIFT) build -c release --product amane-relayd
	$(SWIFT) build -c release --product amane
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d \
		$(DESTDIR)$(SYSCONFDIR)/amane-relay $(DESTDIR)$(DATADIR)/amane-relay/seeds/demo $(DESTDIR)$(DATADIR)/doc/amane-relay \
		$(DESTDIR)$(DATADIR)/man/man1 $(DESTDIR)$(DATADIR)/man/man8 $(DESTDIR)$(DATADIR)/bash-completion/completions \
		$(DESTDIR)$(DATADIR)/zsh/site-functions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0755 $(RELEASE_BIN)/amane-relayd $(RELEASE_BIN)/amane $(DESTDIR)$(BINDIR)/
	for unit in amane-relayd.service amane-relayd-backup.service amane-relayd-backup.timer; do \
		sed -e 's|/usr/local/bin|$(BINDIR)|g' -e 's|/usr/local/share|$(DATADIR)|g' -e 's|/etc/amane-relay|$(SYSCONFDIR)/amane-relay|g' \
			Deploy/$$unit > $(DESTDIR)$(UNITDIR)/$$unit; chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit; done
	install -m 0644 Deploy/amane-relay.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/amane-relay.conf
	sed -e 's|/etc/amane-relay|$(SYSCONFDIR)/amane-relay|g' Deploy/amane-relay.tmpfiles > $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/amane-relay.conf
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/amane-relay.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/amane-relay/amane-relayd.yaml ] || \
		sed -e 's|/usr/local/share|$(DATADIR)|g' Config/amane-relayd.yaml > $(DESTDIR)$(SYSCONFDIR)/amane-relay/amane-relayd.yaml
	install -m 0644 seeds/taxonomy.yaml seeds/policy.yaml seeds/README.md $(DESTDIR)$(DATADIR)/amane-relay/seeds/
	install -m 0644 seeds/demo/*.json $(DESTDIR)$(DATADIR)/amane-relay/seeds/demo/
	install -m 0644 Deploy/README.md $(DESTDIR)$(DATADIR)/doc/amane-relay/README.md
	install -m 0644 SECURITY.md $(DESTDIR)$(DATADIR)/doc/amane-relay/SECURITY.md
	install -m 0644 Deploy/man/amane.1 $(DESTDIR)$(DATADIR)/man/man1/amane.1
	install -m 0644 Deploy/man/amane-relayd.8 $(DESTDIR)$(DATADIR)/man/man8/amane-relayd.8
	$(RELEASE_BIN)/amane --generate-completion-script bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/amane
	$(RELEASE_BIN)/amane --generate-completion-script zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_amane
	$(RELEASE_BIN)/amane --generate-completion-script fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/amane.fish
	$(RELEASE_BIN)/amane-relayd --generate-completion-script bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/amane-relayd
	$(RELEASE_BIN)/amane-relayd --generate-completion-script zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_amane-relayd
	$(RELEASE_BIN)/amane-relayd --generate-completion-script fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/amane-relayd.fish
	@# systemd reads changed units only when told; a restart after an upgrade would otherwise run the old unit.
	@if $(SYSTEMD_LIVE); then systemctl daemon-reload; fi

# Removes what install added; never the configuration you edited, and never the data.
uninstall:
	@# A running relay is stopped (gracefully: nothing acknowledged is lost) before its unit goes.
	@if $(SYSTEMD_LIVE); then systemctl disable --now amane-relayd.service amane-relayd-backup.timer 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(BINDIR)/amane-relayd $(DESTDIR)$(BINDIR)/amane
	rm -f $(DESTDIR)$(UNITDIR)/amane-relayd.service $(DESTDIR)$(UNITDIR)/amane-relayd-backup.service $(DESTDIR)$(UNITDIR)/amane-relayd-backup.timer
	@if $(SYSTEMD_LIVE); then systemctl daemon-reload; fi
	rm -f $(DESTDIR)$(PREFIX)/lib/sysusers.d/amane-relay.conf $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/amane-relay.conf
	rm -rf $(DESTDIR)$(DATADIR)/amane-relay $(DESTDIR)$(DATADIR)/doc/amane-relay
	rm -f $(DESTDIR)$(DATADIR)/man/man1/amane.1 $(DESTDIR)$(DATADIR)/man/man8/amane-relayd.8
	rm -f $(DESTDIR)$(DATADIR)/bash-completion/completions/amane $(DESTDIR)$(DATADIR)/bash-completion/completions/amane-relayd
	rm -f $(DESTDIR)$(DATADIR)/zsh/site-functions/_amane $(DESTDIR)$(DATADIR)/zsh/site-functions/_amane-relayd
	rm -f $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/amane.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/amane-relayd.fish
	@cmp -s Config/amane-relayd.yaml $(DESTDIR)$(SYSCONFDIR)/amane-relay/amane-relayd.yaml 2>/dev/null || \
		echo "Kept $(DESTDIR)$(SYSCONFDIR)/amane-relay (your configuration) and the data in /var/lib/amane-relay."

clean:
	rm -rf .build
