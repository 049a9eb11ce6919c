# distd: the developer's entry points. `make run` and `make test` are the README's first two
# commands and must work on a fresh machine with Rust installed.

CARGO ?= cargo
PREFIX ?= /usr/local
RELEASE_BIN := target/release/distd
MUSL_TARGET := x86_64-unknown-linux-musl

.PHONY: all build run test lint bench bench-loaded chaos fuzz static completions man install clean

all: build

build:
	$(CARGO) build --release

# The demo: a pipeline of commands and functions on a local cluster of 4 workers, with its
# result checked.
run: build
	@out=$$($(RELEASE_BIN) local -n 4 --run examples/demo.toml --no-progress) || exit 1; \
	echo "$$out"; \
	case "$$out" in \
	  *"sum of 1..1000 = 500500, sum of squares = 333833500"*) echo "demo result checked: OK" ;; \
	  *) echo "demo result is wrong" >&2; exit 1 ;; \
	esac

# The tests, after the lints: formatting and clippy with every warning an error.
test: lint
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: build
	$(CARGO) run --release --example bench

# The same beside another process that burns one core the whole time, as on a shared machine.
bench-loaded: build
	$(CARGO) run --release --example bench -- --loaded

# Correctness under faults, at length (minutes): the cluster simulation over 20,000 seeds,
# the fault-free 2,000-task graph 20 times in a row, and 2,000 tasks with a worker killed
# every second; the figures are printed. `make test` runs a bounded sample of each.
chaos:
	DISTD_SIM_RUNS=20000 $(CARGO) test --release --lib cluster_sim
	$(CARGO) test --release --test chaos -- --ignored --nocapture --test-threads 1

# The decoders under cargo-fuzz (nightly and cargo-fuzz; fuzz/README.md): each target in
# turn for FUZZ_RUNS executions in one process (one core), from and into fuzz/corpus/.
FUZZ_RUNS ?= 10000000
FUZZ_TARGETS := frames hello message

fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz target $$t: $(FUZZ_RUNS) runs"; \
	  $(CARGO) +nightly fuzz run $$t -- -runs=$(FUZZ_RUNS) -max_len=4096 -print_final_stats=1 || exit 1; \
	done

static:
	rustup target add $(MUSL_TARGET)
	$(CARGO) build --release --target $(MUSL_TARGET)
	@file target/$(MUSL_TARGET)/release/distd 2>/dev/null || true
	@echo "static binary: target/$(MUSL_TARGET)/release/distd"

completions:
	$(CARGO) run --quiet -- generate completions completions

man:
	$(CARGO) run --quiet -- generate man man

install: build
	install -Dm755 $(RELEASE_BIN) $(DESTDIR)$(PREFIX)/bin/distd
	install -Dm644 completions/distd.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/distd
	install -Dm644 completions/_distd $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_distd
	install -Dm644 completions/distd.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/distd.fish
	install -Dm644 completions/distd.elv $(DESTDIR)$(PREFIX)/share/elvish/lib/distd.elv
	install -Dm644 completions/_distd.ps1 $(DESTDIR)$(PREFIX)/share/distd/_distd.ps1
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/

clean:
	$(CARGO) clean
