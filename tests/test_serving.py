"""The gRPC client against a loopback stand-in for TF Serving's PredictionService.

The stand-in is built from the same protos (tensorflow-serving-api) and runs the
SavedModel's serving signature, as tensorflow_model_server does.
"""

from concurrent import futures

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from keras_frcnn.detection import PostprocessConfig
from keras_frcnn.export import export_saved_model
from keras_frcnn.model.fast_rcnn import FastRCNN
from keras_frcnn.serving import ServingClient, ServingError, make_request, parse_response


class StandInPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, name, export_dir):
        self.name = name
        self.signatures = tf.saved_model.load(str(export_dir)).signatures

    def Predict(self, request, context):
        if request.model_spec.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Servable not found for request: Latest({request.model_spec.name})")
        signature = self.signatures[request.model_spec.signature_name or "serving_default"]
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        try:
            outputs = signature(**inputs)
        except (tf.errors.InvalidArgumentError, TypeError) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err).splitlines()[0])
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    keras.utils.set_random_seed(2)
    model = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    kernel, bias = model.get_layer("cls_score").get_weights()
    model.get_layer("cls_score").set_weights([kernel * 200.0, bias])
    export_dir = tmp_path_factory.mktemp("export") / "1"
    module = export_saved_model(model, ["cat", "dog"], export_dir, scales=(64,),
                                preprocessing="tf",
                                postprocess=PostprocessConfig(mode="default",
                                                              score_threshold=0.0))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        StandInPredictionService("frcnn", export_dir), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield module, f"127.0.0.1:{port}"
    server.stop(None)


def inputs():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 80, 3)).astype(np.uint8)
    proposals = np.array([[0, 0, 40, 40], [10, 12, 70, 60], [30, 5, 79, 63]], np.float32)
    return image, proposals


def test_client_returns_the_served_detections(served):
    module, target = served
    image, proposals = inputs()
    with ServingClient(target, "frcnn") as client:
        out = client.detect(image, proposals)
    expected = module(image, proposals)
    assert set(out) == set(expected) and int(out["num_detections"]) > 0
    for name, value in expected.items():
        np.testing.assert_array_equal(out[name], value)
    assert set(out["detection_class_names"]) <= {"cat", "dog"}


def test_client_reports_server_errors(served):
    _, target = served
    image, proposals = inputs()
    with ServingClient(target, "no_such_model") as client:
        with pytest.raises(ServingError, match="NOT_FOUND"):
            client.detect(image, proposals)
    with ServingClient(target, "frcnn", signature="missing") as client:
        with pytest.raises(ServingError):
            client.detect(image, proposals)


def test_request_validation_and_round_trip():
    image, proposals = inputs()
    request = make_request(image, proposals, "frcnn", version=3)
    assert request.model_spec.version.value == 3
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["image"]), image)
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        make_request(image.astype(np.float32), proposals, "frcnn")
    # Non-finite proposals go to the model as they are: it drops them (docs/serving.md).
    sent = make_request(image, [[0, 0, np.inf, 3]], "frcnn")
    np.testing.assert_array_equal(tf.make_ndarray(sent.inputs["proposals"]), [[0, 0, np.inf, 3]])
    response = predict_pb2.PredictResponse()
    response.outputs["detection_class_names"].CopyFrom(tf.make_tensor_proto([b"cat"]))
    assert parse_response(response)["detection_class_names"].tolist() == ["cat"]
