# Builds, tests, demonstrates and installs picture-book.
#   make demo                                       mirror for real, on loopback
#   make test                                       the test suite (as root)
#   make && sudo make install                       PREFIX and DESTDIR as usual
#   make install DESTDIR=/tmp/root PREFIX=/usr      (for packaging)
#   make image                                      the container image, offline
# The sample configuration goes to $(SYSCONFDIR)/picture-book/ and never
# replaces one that is already there.

PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/picture-book
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
CARGO ?= cargo
BIN := target/release/picture-book
CONF := $(DESTDIR)$(SYSCONFDIR)/picture-book

.PHONY: all install uninstall test demo image

all: $(BIN)

$(BIN): Cargo.toml Cargo.lock $(wildcard src/*.rs src/*/*.rs)
	$(CARGO) build --release --locked

# The e2e tests start their own docker daemon, registries and podman on
# loopback, so they run as root; the packages they need are installed first.
test:
	scripts/deps.sh test
	@[ "$$(id -u)" = 0 ] || { echo "make test: the tests start a docker daemon and need root: sudo make test" >&2; exit 1; }
	$(CARGO) test

# picture-book at work on a private loopback environment, cleaned up after.
demo:
	scripts/deps.sh demo
	$(CARGO) build --quiet
	PICTURE_BOOK=target/debug/picture-book scripts/demo.sh

# FROM scratch with the release binary; needs docker (DOCKER_HOST as usual).
image: $(BIN)
	packaging/container/build.sh

install: $(BIN)
	install -Dm755 $(BIN) $(DESTDIR)$(BINDIR)/picture-book
	install -Dm644 man/picture-book.1 $(DESTDIR)$(MANDIR)/man1/picture-book.1
	install -Dm644 man/picture-book.yaml.5 $(DESTDIR)$(MANDIR)/man5/picture-book.yaml.5
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/picture-book|$(BINDIR)/picture-book|' packaging/systemd/picture-book.service \
		>$(DESTDIR)$(UNITDIR)/picture-book.service
	chmod 644 $(DESTDIR)$(UNITDIR)/picture-book.service
	install -Dm644 packaging/systemd/picture-book.sysusers $(DESTDIR)$(SYSUSERSDIR)/picture-book.conf
	install -Dm644 packaging/completions/picture-book.bash $(DESTDIR)$(BASHCOMPDIR)/picture-book
	install -Dm644 packaging/completions/_picture-book $(DESTDIR)$(ZSHCOMPDIR)/_picture-book
	install -d $(DESTDIR)$(DOCDIR)
	install -m644 README.md CHANGELOG.md LICENSE $(DESTDIR)$(DOCDIR)/
	install -d -m755 $(CONF)
	[ -e $(CONF)/config.yaml ] || install -m640 config.yaml $(CONF)/config.yaml
	[ -e $(CONF)/test.sh ] || install -m755 test.sh $(CONF)/test.sh

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/picture-book \
		$(DESTDIR)$(MANDIR)/man1/picture-book.1 \
		$(DESTDIR)$(MANDIR)/man5/picture-book.yaml.5 \
		$(DESTDIR)$(UNITDIR)/picture-book.service \
		$(DESTDIR)$(SYSUSERSDIR)/picture-book.conf \
		$(DESTDIR)$(BASHCOMPDIR)/picture-book \
		$(DESTDIR)$(ZSHCOMPDIR)/_picture-book
	rm -rf $(DESTDIR)$(DOCDIR)
	@echo "kept $(SYSCONFDIR)/picture-book/ (your configuration)"
