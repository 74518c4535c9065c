"""The legacy V1LayerParameter ``LayerType`` enum: names, numbers (caffe.proto) and the
new-style type strings they became."""

from __future__ import annotations

from .prototxt import PrototxtError

#: V1 enum name -> (number in caffe.proto, new type name)
V1_TYPES: dict[str, tuple[int, str]] = {
    "NONE": (0, ""),
    "ABSVAL": (35, "AbsVal"),
    "ACCURACY": (1, "Accuracy"),
    "ARGMAX": (30, "ArgMax"),
    "BNLL": (2, "BNLL"),
    "CONCAT": (3, "Concat"),
    "CONTRASTIVE_LOSS": (37, "ContrastiveLoss"),
    "CONVOLUTION": (4, "Convolution"),
    "DATA": (5, "Data"),
    "DECONVOLUTION": (39, "Deconvolution"),
    "DROPOUT": (6, "Dropout"),
    "DUMMY_DATA": (32, "DummyData"),
    "EUCLIDEAN_LOSS": (7, "EuclideanLoss"),
    "ELTWISE": (25, "Eltwise"),
    "EXP": (38, "Exp"),
    "FLATTEN": (8, "Flatten"),
    "HDF5_DATA": (9, "HDF5Data"),
    "HDF5_OUTPUT": (10, "HDF5Output"),
    "HINGE_LOSS": (28, "HingeLoss"),
    "IM2COL": (11, "Im2col"),
    "IMAGE_DATA": (12, "ImageData"),
    "INFOGAIN_LOSS": (13, "InfogainLoss"),
    "INNER_PRODUCT": (14, "InnerProduct"),
    "LRN": (15, "LRN"),
    "MEMORY_DATA": (29, "MemoryData"),
    "MULTINOMIAL_LOGISTIC_LOSS": (16, "MultinomialLogisticLoss"),
    "MVN": (34, "MVN"),
    "POOLING": (17, "Pooling"),
    "POWER": (26, "Power"),
    "RELU": (18, "ReLU"),
    "SIGMOID": (19, "Sigmoid"),
    "SIGMOID_CROSS_ENTROPY_LOSS": (27, "SigmoidCrossEntropyLoss"),
    "SILENCE": (36, "Silence"),
    "SOFTMAX": (20, "Softmax"),
    "SOFTMAX_LOSS": (21, "SoftmaxWithLoss"),
    "SPLIT": (22, "Split"),
    "SLICE": (33, "Slice"),
    "TANH": (23, "TanH"),
    "WINDOW_DATA": (24, "WindowData"),
    "THRESHOLD": (31, "Threshold"),
}
V1_TYPE_NAMES = {k: v[1] for k, v in V1_TYPES.items()}
V1_BY_NUMBER = {v[0]: v[1] for v in V1_TYPES.values()}


def v1_type_name(value: str | int, where: str) -> str:
    """The new type name of a V1 enum value (a name such as ``CONVOLUTION`` or its number)."""
    if isinstance(value, int):
        if value not in V1_BY_NUMBER:
            raise PrototxtError(f"{where}: unknown V1 layer type number {value}")
        return V1_BY_NUMBER[value]
    if value in V1_TYPE_NAMES:
        return V1_TYPE_NAMES[value]
    if value in V1_BY_NUMBER.values():
        return value  # already a new-style name
    raise PrototxtError(f"{where}: unknown V1 layer type '{value}' (expected one of {', '.join(V1_TYPES)})")
