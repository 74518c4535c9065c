"""The fields of Caffe's text-format messages: which names each message type knows, and of what type.

Written from the field names and types of caffe.proto as py-faster-rcnn's Caffe fork has it (the
version its prototxts and solvers were written for), so that a misspelt field (``strid: 2``,
``negative_slop``, ``relux_param { }``) is an error, as in Caffe, instead of a silently ignored line.
Every field Caffe knows is listed, including the ones this engine does not implement: those keep
their behaviour (ignored, or refused by the layer that reads them) and only the truly unknown
names are rejected. ``validate.py`` walks a parsed message against these tables.

A field type is a scalar (``int32``, ``int64``, ``uint32``, ``uint64``, ``float``, ``double``,
``bool``, ``string``, ``bytes``), an enum named in :data:`ENUMS`, a message named in
:data:`MESSAGES`, ``layertype`` (a string; a legacy enum name there gets its own message),
``v1type`` (the legacy layer-type enum, checked by ``v1.py``) or ``any``; a leading ``*``
marks a repeated field. Deviations from caffe.proto are marked "engine:".
"""

from __future__ import annotations

from .v1 import V1_TYPES

SCALARS = frozenset(["int32", "int64", "uint32", "uint64", "float", "double", "bool", "string", "bytes"])

_ENGINE = {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2}
_POOL = {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}

#: enum type -> {value name: number}
ENUMS: dict[str, dict[str, int]] = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "Engine": _ENGINE,
    "PoolMethod": _POOL,
    "VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2},
    "DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1},
    "NormalizationMode": {"FULL": 0, "VALID": 1, "BATCH_SIZE": 2, "NONE": 3},
    "EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    "NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "HingeNorm": {"L1": 1, "L2": 2},
    "DB": {"LEVELDB": 0, "LMDB": 1},
    "ReductionOp": {"SUM": 1, "ASUM": 2, "SUMSQ": 3, "MEAN": 4},
    "SnapshotFormat": {"HDF5": 0, "BINARYPROTO": 1},
    "SolverMode": {"CPU": 0, "GPU": 1},
    "SolverType": {"SGD": 0, "NESTEROV": 1, "ADAGRAD": 2, "RMSPROP": 3, "ADADELTA": 4, "ADAM": 5},
    "V1LayerType": {k: v[0] for k, v in V1_TYPES.items()},
}

_FILLERS = {"weight_filler": "FillerParameter", "bias_filler": "FillerParameter"}

#: LayerParameter's per-type parameter messages (and the two shared by many types)
_LAYER_PARAMS = {
    "transform_param": "TransformationParameter", "loss_param": "LossParameter",
    "accuracy_param": "AccuracyParameter", "argmax_param": "ArgMaxParameter",
    "batch_norm_param": "BatchNormParameter", "bias_param": "BiasParameter",
    "concat_param": "ConcatParameter", "contrastive_loss_param": "ContrastiveLossParameter",
    "convolution_param": "ConvolutionParameter", "crop_param": "CropParameter",
    "data_param": "DataParameter", "dropout_param": "DropoutParameter",
    "dummy_data_param": "DummyDataParameter", "eltwise_param": "EltwiseParameter",
    "elu_param": "ELUParameter", "embed_param": "EmbedParameter", "exp_param": "ExpParameter",
    "flatten_param": "FlattenParameter", "hdf5_data_param": "HDF5DataParameter",
    "hdf5_output_param": "HDF5OutputParameter", "hinge_loss_param": "HingeLossParameter",
    "image_data_param": "ImageDataParameter", "infogain_loss_param": "InfogainLossParameter",
    "inner_product_param": "InnerProductParameter", "input_param": "InputParameter",
    "log_param": "LogParameter", "lrn_param": "LRNParameter", "memory_data_param": "MemoryDataParameter",
    "mvn_param": "MVNParameter", "parameter_param": "ParameterParameter",
    "pooling_param": "PoolingParameter", "power_param": "PowerParameter", "prelu_param": "PReLUParameter",
    "python_param": "PythonParameter", "recurrent_param": "RecurrentParameter",
    "reduction_param": "ReductionParameter", "relu_param": "ReLUParameter",
    "reshape_param": "ReshapeParameter", "roi_pooling_param": "ROIPoolingParameter",
    "scale_param": "ScaleParameter", "sigmoid_param": "SigmoidParameter",
    "smooth_l1_loss_param": "SmoothL1LossParameter", "softmax_param": "SoftmaxParameter",
    "spp_param": "SPPParameter", "slice_param": "SliceParameter", "tanh_param": "TanHParameter",
    "threshold_param": "ThresholdParameter", "tile_param": "TileParameter",
    "window_data_param": "WindowDataParameter",
}
#: the ones V1LayerParameter has too
_V1_PARAMS = (
    "transform_param", "loss_param", "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "exp_param",
    "hdf5_data_param", "hdf5_output_param", "hinge_loss_param", "image_data_param", "infogain_loss_param",
    "inner_product_param", "lrn_param", "memory_data_param", "mvn_param", "pooling_param", "power_param",
    "relu_param", "sigmoid_param", "softmax_param", "slice_param", "tanh_param", "threshold_param",
    "window_data_param",
    # engine: fast-rcnn-era files put these in V1 blocks too (their ROI_POOLING type is refused by v1.py)
    "roi_pooling_param", "smooth_l1_loss_param",
)

#: message type -> {field name: field type}
MESSAGES: dict[str, dict[str, str]] = {
    # -- shapes, blobs, fillers -------------------------------------------------------------
    "BlobShape": {"dim": "*int64"},
    "BlobProto": {
        "shape": "BlobShape", "data": "*float", "diff": "*float", "double_data": "*double",
        "double_diff": "*double", "num": "int32", "channels": "int32", "height": "int32", "width": "int32",
    },
    "FillerParameter": {
        "type": "string", "value": "float", "min": "float", "max": "float", "mean": "float", "std": "float",
        "sparse": "int32", "variance_norm": "VarianceNorm",
    },
    # -- nets --------------------------------------------------------------------------------
    "NetParameter": {
        "name": "string", "input": "*string", "input_shape": "*BlobShape", "input_dim": "*int32",
        "force_backward": "bool", "state": "NetState", "debug_info": "bool",
        "layer": "*LayerParameter", "layers": "*V1LayerParameter",
    },
    "NetState": {"phase": "Phase", "level": "int32", "stage": "*string"},
    "NetStateRule": {
        "phase": "Phase", "min_level": "int32", "max_level": "int32", "stage": "*string", "not_stage": "*string",
    },
    "ParamSpec": {"name": "string", "share_mode": "DimCheckMode", "lr_mult": "float", "decay_mult": "float"},
    "LayerParameter": {
        "name": "string", "type": "layertype", "bottom": "*string", "top": "*string", "phase": "Phase",
        "loss_weight": "*float", "param": "*ParamSpec", "blobs": "*BlobProto", "propagate_down": "*bool",
        "include": "*NetStateRule", "exclude": "*NetStateRule", **_LAYER_PARAMS,
    },
    "V1LayerParameter": {
        "bottom": "*string", "top": "*string", "name": "string", "include": "*NetStateRule",
        "exclude": "*NetStateRule", "type": "v1type", "blobs": "*BlobProto", "param": "*string",
        "blob_share_mode": "*DimCheckMode", "blobs_lr": "*float", "weight_decay": "*float",
        "loss_weight": "*float", **{k: _LAYER_PARAMS[k] for k in _V1_PARAMS},
        # engine: the V0 format (a layer inside layers) is recognised and refused by netspec.upgrade_v1_layer
        "layer": "any",
    },
    "TransformationParameter": {
        "scale": "float", "mirror": "bool", "crop_size": "uint32", "mean_file": "string",
        "mean_value": "*float", "force_color": "bool", "force_gray": "bool",
    },
    "LossParameter": {"ignore_label": "int32", "normalization": "NormalizationMode", "normalize": "bool"},
    # -- layer parameters, alphabetical ------------------------------------------------------
    "AccuracyParameter": {"top_k": "uint32", "axis": "int32", "ignore_label": "int32"},
    "ArgMaxParameter": {"out_max_val": "bool", "top_k": "uint32", "axis": "int32"},
    "BatchNormParameter": {"use_global_stats": "bool", "moving_average_fraction": "float", "eps": "float"},
    "BiasParameter": {"axis": "int32", "num_axes": "int32", "filler": "FillerParameter"},
    "ConcatParameter": {"axis": "int32", "concat_dim": "uint32"},
    "ContrastiveLossParameter": {"margin": "float", "legacy_version": "bool"},
    "ConvolutionParameter": {
        "num_output": "uint32", "bias_term": "bool", "pad": "*uint32", "kernel_size": "*uint32",
        "stride": "*uint32", "dilation": "*uint32", "pad_h": "uint32", "pad_w": "uint32",
        "kernel_h": "uint32", "kernel_w": "uint32", "stride_h": "uint32", "stride_w": "uint32",
        "group": "uint32", **_FILLERS, "engine": "Engine", "axis": "int32", "force_nd_im2col": "bool",
    },
    "CropParameter": {"axis": "int32", "offset": "*uint32"},
    "DataParameter": {
        "source": "string", "batch_size": "uint32", "rand_skip": "uint32", "backend": "DB", "scale": "float",
        "mean_file": "string", "crop_size": "uint32", "mirror": "bool", "force_encoded_color": "bool",
        "prefetch": "uint32",
    },
    "DropoutParameter": {"dropout_ratio": "float", "scale_train": "bool"},
    "DummyDataParameter": {
        "data_filler": "*FillerParameter", "shape": "*BlobShape", "num": "*uint32", "channels": "*uint32",
        "height": "*uint32", "width": "*uint32",
    },
    "EltwiseParameter": {"operation": "EltwiseOp", "coeff": "*float", "stable_prod_grad": "bool"},
    "ELUParameter": {"alpha": "float"},
    "EmbedParameter": {"num_output": "uint32", "input_dim": "uint32", "bias_term": "bool", **_FILLERS},
    "ExpParameter": {"base": "float", "scale": "float", "shift": "float"},
    "FlattenParameter": {"axis": "int32", "end_axis": "int32"},
    "HDF5DataParameter": {"source": "string", "batch_size": "uint32", "shuffle": "bool"},
    "HDF5OutputParameter": {"file_name": "string"},
    "HingeLossParameter": {"norm": "HingeNorm"},
    "ImageDataParameter": {
        "source": "string", "batch_size": "uint32", "rand_skip": "uint32", "shuffle": "bool",
        "new_height": "uint32", "new_width": "uint32", "is_color": "bool", "scale": "float",
        "mean_file": "string", "crop_size": "uint32", "mirror": "bool", "root_folder": "string",
    },
    "InfogainLossParameter": {"source": "string", "axis": "int32"},
    "InnerProductParameter": {
        "num_output": "uint32", "bias_term": "bool", **_FILLERS, "axis": "int32", "transpose": "bool",
    },
    "InputParameter": {"shape": "*BlobShape"},
    "LogParameter": {"base": "float", "scale": "float", "shift": "float"},
    "LRNParameter": {
        "local_size": "uint32", "alpha": "float", "beta": "float", "norm_region": "NormRegion", "k": "float",
        "engine": "Engine",
    },
    "MemoryDataParameter": {"batch_size": "uint32", "channels": "uint32", "height": "uint32", "width": "uint32"},
    "MVNParameter": {"normalize_variance": "bool", "across_channels": "bool", "eps": "float"},
    "ParameterParameter": {"shape": "BlobShape"},
    "PoolingParameter": {
        # engine: pad, kernel_size and stride may be given twice (h, w), as for convolutions
        "pool": "PoolMethod", "pad": "*uint32", "pad_h": "uint32", "pad_w": "uint32",
        "kernel_size": "*uint32", "kernel_h": "uint32", "kernel_w": "uint32", "stride": "*uint32",
        "stride_h": "uint32", "stride_w": "uint32", "engine": "Engine", "global_pooling": "bool",
    },
    "PowerParameter": {"power": "float", "scale": "float", "shift": "float"},
    "PReLUParameter": {"filler": "FillerParameter", "channel_shared": "bool"},
    "PythonParameter": {"module": "string", "layer": "string", "param_str": "string", "share_in_parallel": "bool"},
    "RecurrentParameter": {"num_output": "uint32", **_FILLERS, "debug_info": "bool", "expose_hidden": "bool"},
    "ReductionParameter": {"operation": "ReductionOp", "axis": "int32", "coeff": "float"},
    "ReLUParameter": {"negative_slope": "float", "engine": "Engine"},
    "ReshapeParameter": {"shape": "BlobShape", "axis": "int32", "num_axes": "int32"},
    "ROIPoolingParameter": {"pooled_h": "uint32", "pooled_w": "uint32", "spatial_scale": "float"},
    "ScaleParameter": {
        "axis": "int32", "num_axes": "int32", "filler": "FillerParameter", "bias_term": "bool",
        "bias_filler": "FillerParameter",
    },
    "SigmoidParameter": {"engine": "Engine"},
    "SmoothL1LossParameter": {"sigma": "float"},
    "SliceParameter": {"axis": "int32", "slice_point": "*uint32", "slice_dim": "uint32"},
    "SoftmaxParameter": {"engine": "Engine", "axis": "int32"},
    "SPPParameter": {"pyramid_height": "uint32", "pool": "PoolMethod", "engine": "Engine"},
    "TanHParameter": {"engine": "Engine"},
    "ThresholdParameter": {"threshold": "float"},
    "TileParameter": {"axis": "int32", "tiles": "int32"},
    "WindowDataParameter": {
        "source": "string", "scale": "float", "mean_file": "string", "batch_size": "uint32",
        "crop_size": "uint32", "mirror": "bool", "fg_threshold": "float", "bg_threshold": "float",
        "fg_fraction": "float", "context_pad": "uint32", "crop_mode": "string", "cache_images": "bool",
        "root_folder": "string",
    },
    # -- solvers -----------------------------------------------------------------------------
    "SolverParameter": {
        "net": "string", "net_param": "NetParameter", "train_net": "string", "test_net": "*string",
        "train_net_param": "NetParameter", "test_net_param": "*NetParameter", "train_state": "NetState",
        "test_state": "*NetState", "test_iter": "*int32", "test_interval": "int32",
        "test_compute_loss": "bool", "test_initialization": "bool", "base_lr": "float", "display": "int32",
        "average_loss": "int32", "max_iter": "int32", "iter_size": "int32", "lr_policy": "string",
        "gamma": "float", "power": "float", "momentum": "float", "weight_decay": "float",
        "regularization_type": "string", "stepsize": "int32", "stepvalue": "*int32", "clip_gradients": "float",
        "snapshot": "int32", "snapshot_prefix": "string", "snapshot_diff": "bool",
        "snapshot_format": "SnapshotFormat", "solver_mode": "SolverMode", "device_id": "int32",
        "random_seed": "int64", "type": "string", "delta": "float", "momentum2": "float", "rms_decay": "float",
        "debug_info": "bool", "snapshot_after_train": "bool", "solver_type": "SolverType",
        "layer_wise_reduce": "bool",
        # engine: later Caffe's initial weights (repeated string weights = 42); accepted and ignored
        "weights": "*string",
    },
}
