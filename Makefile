.PHONY: demo test lint
demo:  ## install (first time) and run the simulator on the bundled trace, with a plot
	bash hack/demo.sh
test:  ## install everything (Python env, control-plane binaries) and run the whole test suite
	bash hack/test.sh
