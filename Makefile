# factlog -- a thin Makefile over Meson + Ninja. The README's two commands:
#   make run    install what the build needs, build, and run factlog on ./data with the example app
#   make test   install what the tests need, build (plain, ASan+UBSan, libFuzzer), run every suite
BUILD  ?= build
ASAN   ?= build-asan
FUZZ   ?= build-fuzz
DATA   ?= ./data
FUZZ_SECONDS ?= 10

MESON_FLAGS = -Dwerror=true -Dwarning_level=3 -Dc_std=c17

.PHONY: all build run test test-unit test-asan test-fuzz fuzz faults bench clean deps-run deps-test deps-bench

all: build

deps-run:
	@scripts/install-deps run

deps-test:
	@scripts/install-deps test

deps-bench:
	@scripts/install-deps bench

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized $(MESON_FLAGS)

$(ASAN)/build.ninja:
	meson setup $(ASAN) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false $(MESON_FLAGS)

$(FUZZ)/build.ninja:
	CC=clang-14 meson setup $(FUZZ) --buildtype=debug -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false $(MESON_FLAGS)

build: deps-run $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The main job: factlog on $(DATA) with the recently-viewed example loaded (examples/recently-viewed).
run: build
	examples/recently-viewed/run.sh ./$(BUILD)/factlog $(DATA)

test: deps-test $(BUILD)/build.ninja $(ASAN)/build.ninja $(FUZZ)/build.ninja
	ninja -C $(BUILD) && ninja -C $(ASAN) && ninja -C $(FUZZ)
	@rc=0; \
	meson test -C $(BUILD) --print-errorlogs --suite unit --suite integration || rc=1; \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN) --print-errorlogs --suite unit --suite asan-integration || rc=1; \
	FUZZ_SECONDS=$(FUZZ_SECONDS) meson test -C $(FUZZ) --print-errorlogs --suite fuzz || rc=1; \
	scripts/test-summary $(BUILD) $(ASAN) $(FUZZ); \
	exit $$rc

# Longer fuzzing on demand: make fuzz FUZZ_SECONDS=600
fuzz: deps-test $(FUZZ)/build.ninja
	ninja -C $(FUZZ)
	FUZZ_SECONDS=$(FUZZ_SECONDS) meson test -C $(FUZZ) --print-errorlogs --suite fuzz --timeout-multiplier 0

# The long fault profile: many more crash and model seeds, then the fault scenarios (docs/reliability.md).
faults: deps-test $(BUILD)/build.ninja
	ninja -C $(BUILD)
	CRASH_SEEDS=5000 ./$(BUILD)/tests/test_crash
	MODEL_SEEDS=400 ./$(BUILD)/tests/test_model
	KILLS=200 POWERCUTS=60 tests/faults/run.sh $(BUILD)/factlog $(BUILD)/tests/faults/fsync_fail.so \
		$(BUILD)/tests/faults/powerloss.so
	FACTLOG_DOWNSTREAM_DOWN_S=60 FACTLOG_MOCK_CLUSTER=$(BUILD)/tests/mock_cluster \
		tests/integration/functions/run.sh $(BUILD)/factlog -k "downstream or poison or crash or restart"

bench: deps-bench $(BUILD)/build.ninja
	ninja -C $(BUILD)
	bench/storage.sh $(BUILD)
	bench/kafka.sh $(BUILD)
	bench/http.sh $(BUILD)
	bench/functions.sh $(BUILD)
	bench/recently_viewed.sh $(BUILD)
	bench/replay.sh $(BUILD)
	bench/compare $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
