"""A gRPC client for TensorFlow Serving's PredictionService, for exported detectors.

    from keras_frcnn.serving import ServingClient
    client = ServingClient("localhost:8500", model_name="demo")
    detections = client.detect(image_rgb, proposals)   # dict of numpy arrays

The request carries the two inputs of keras_frcnn/export.py's signature (image
uint8 [H, W, 3] RGB, proposals float32 [R, 4] in image pixels); the reply's
outputs come back as numpy arrays under the same names (detection_boxes,
detection_scores, detection_classes, detection_class_names as str,
num_detections). Proposals are not filtered here: the served graph clips them
to the image and drops the unusable ones (docs/serving.md). Needs only
TensorFlow, grpcio and tensorflow-serving-api: it does not load a model.
"""

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from keras_frcnn.boxes import as_proposals

SIGNATURE = "serving_default"


class ServingError(RuntimeError):
    """The server refused or failed a request."""


def make_request(image, proposals, model_name, signature=SIGNATURE, version=None):
    """A PredictRequest for one image (uint8 [H, W, 3], RGB) and its proposals [R, 4]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3] (RGB), got {image.dtype} "
                         f"{image.shape}")
    # Checked, never reshaped (the served graph refuses other shapes too), and otherwise
    # sent as they are: the served graph drops the non-finite, inverted and outside
    # ones as the Python Detector does, so the client's answer is the model's.
    proposals = as_proposals(proposals)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(image))
    request.inputs["proposals"].CopyFrom(tf.make_tensor_proto(proposals))
    return request


def parse_response(response):
    """{output name: numpy array} of a PredictResponse (strings decoded as str)."""
    outputs = {}
    for name, proto in response.outputs.items():
        value = tf.make_ndarray(proto)
        if value.dtype == object:
            value = value.astype(str)
        outputs[name] = value
    return outputs


class ServingClient:
    """Calls a detector served by TensorFlow Serving over gRPC (default port 8500)."""

    def __init__(self, target, model_name, signature=SIGNATURE, version=None, timeout=30.0,
                 max_message_mb=64):
        self.model_name = model_name
        self.signature = signature
        self.version = version
        self.timeout = timeout
        size = max_message_mb * 1024 * 1024
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def detect(self, image, proposals):
        """Detections of one RGB uint8 image with its [R, 4] proposals."""
        request = make_request(image, proposals, self.model_name, self.signature, self.version)
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ServingError(f"{self.model_name}: {err.code().name}: {err.details()}") from None
        return parse_response(response)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
