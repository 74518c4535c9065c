#!/usr/bin/env python3
"""Convert torchvision VGG16 ImageNet weights (a state dict .pth, keys features.N / classifier.N)
into a .caffemodel with our VGG16 layer names (conv1_1..conv5_3, fc6, fc7, fc8), with the
RGB->BGR swap and torchvision's x/255, (x - mean)/std input scaling folded into conv1_1 so that
the nets take our usual input (BGR minus PIXEL_MEANS).

    python tools/import_torchvision_vgg16.py vgg16-397923af.pth data/imagenet_models/VGG16.v2.caffemodel
"""

from frcnn.caffe.torchvision_vgg16 import import_torchvision_vgg16
from frcnn.cli import add_flag, run_tool, tool_parser


def parse_args(argv=None):
    parser = tool_parser(__doc__.split("\n\n")[0])
    parser.add_argument("src", help="torchvision VGG16 state dict (.pth)")
    parser.add_argument("dst", help="the .caffemodel to write")
    add_flag(parser, "--pixel_means", nargs=3, type=float, metavar=("B", "G", "R"), default=None,
             help="BGR means our input has subtracted (default: the config's PIXEL_MEANS)")
    add_flag(parser, "--features_only", action="store_true",
             help="accept a state dict without the classifier (fc6/fc7 then stay randomly initialised)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    model = import_torchvision_vgg16(args.src, args.dst, args.pixel_means, not args.features_only)
    print(f"Wrote {args.dst} ({', '.join(layer.name for layer in model.layers)})")
    return 0


if __name__ == "__main__":
    run_tool(main)
