"""onnxruntime.backend drives onnx's own BackendTest runner: here on the light models
whose data the onnx wheel ships (the node cases come with the conformance issue)."""
import unittest
import warnings

import onnx.backend.test

import onnxruntime.backend as backend


def test_backend_test_runs_light_models():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case definitions warn on purpose (overflow, log(0))
        runner = onnx.backend.test.BackendTest(backend, __name__)
    runner.include(r"^test_(squeezenet|resnet50)_cpu$")  # the real-model cases run the light models
    suite = unittest.TestSuite()
    for case in runner.test_cases.values():
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    result = unittest.TextTestRunner(verbosity=0).run(suite)
    assert result.testsRun - len(result.skipped) == 2, "both light models must run"
    assert result.wasSuccessful(), result.failures + result.errors
