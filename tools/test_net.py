#!/usr/bin/env python3
"""Test a Fast R-CNN / Faster R-CNN network on an image database (upstream's tools/test_net.py).

Under torchrun (`torchrun --nproc_per_node N tools/test_net.py ...`) the ranks share the images
and rank 0 gathers the detections, writes detections.npz and evaluates (the same file and mAP).
"""

import os

from frcnn.cli import add_flag, config_from_args, run_ranks, run_tool, tool_parser, wait_for_file
from frcnn.config import device_from_config, get_output_dir
from frcnn.errors import InputError
from frcnn.inference.test import test_net
from frcnn.nets.adapt import ensure_net_classes
from frcnn.utils.rank_agreement import check_ranks_agree, file_items, image_list_digest


def parse_args(argv=None):
    parser = tool_parser("Test a Fast R-CNN network", device=True, cfg=True, prototxt="required",
                         weights="required", wait=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to test", default="voc_2007_test")
    parser.add_argument("--comp", dest="comp_mode", help="competition mode", action="store_true")
    parser.add_argument("--vis", dest="vis", help="save images with the detections drawn", action="store_true")
    add_flag(parser, "--num_dets", dest="max_per_image", help="max number of detections per image",
             default=100, type=int)
    parser.add_argument("--proposals", default=None,
                        help="proposal file (.npz) for a Fast R-CNN net (sets TEST.PROPOSAL_METHOD rpn and "
                             "TEST.HAS_RPN False; TEST.PROPOSAL_TOP_N takes the first N of each image)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, echo=True)
    check_proposal_source(args.prototxt, bool(cfg.TEST.HAS_RPN) and args.proposals is None)  # --proposals: False
    wait_for_file(args.caffemodel, args.wait)
    with run_ranks(cfg):  # under torchrun: the ranks share the images, rank 0 evaluates
        return test(args, cfg)


def check_proposal_source(prototxt: str, has_rpn: bool) -> None:
    """Refuse a net whose inputs do not fit TEST.HAS_RPN: a Faster R-CNN net (no ``rois`` input:
    its RPN makes the proposals) tested with HAS_RPN False, upstream's default, would look for
    selective-search files; a Fast R-CNN net (a ``rois`` input) needs proposals from somewhere."""
    from frcnn.caffe.netspec import net_layers
    from frcnn.caffe.prototxt import parse_file

    layers = net_layers(parse_file(prototxt), "TEST")  # `input:` fields as an Input layer, as the engine reads them
    inputs = {t for lp in layers if lp.get("type") == "Input" for t in lp.get_strs("top")}
    if not has_rpn and "rois" not in inputs:
        raise InputError(
            f"--def {prototxt}: the net has no 'rois' input (its own RPN makes the proposals), but TEST.HAS_RPN "
            "is False (the default, for Fast R-CNN nets): pass --cfg experiments/cfgs/faster_rcnn_end2end.yml "
            "(or faster_rcnn_alt_opt.yml), or --set TEST.HAS_RPN True")
    if has_rpn and "rois" in inputs:
        raise InputError(
            f"--def {prototxt}: the net takes its proposals as the 'rois' input (a Fast R-CNN net), but "
            "TEST.HAS_RPN is True: pass --proposals F.npz, or --set TEST.HAS_RPN False with "
            "TEST.PROPOSAL_METHOD (selective_search by default)")


def test(args, cfg) -> int:
    from frcnn.caffe import TEST, Net
    from frcnn.datasets.factory import get_imdb

    imdb = get_imdb(args.imdb_name, cfg)
    imdb.competition_mode(args.comp_mode)
    if args.proposals is not None:  # a net fed with proposals has no RPN of its own
        cfg.TEST.PROPOSAL_METHOD, cfg.TEST.HAS_RPN = "rpn", False
        imdb.config["rpn_file"] = args.proposals
    if not cfg.TEST.HAS_RPN:
        imdb.set_proposal_method(cfg.TEST.PROPOSAL_METHOD)
    net_name = os.path.splitext(os.path.basename(args.caffemodel))[0]
    output_dir = get_output_dir(cfg, imdb.name, net_name)
    prototxt = ensure_net_classes(args.prototxt, imdb.num_classes, output_dir, cfg=cfg)
    net = Net(prototxt, args.caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))
    net.name = net_name
    print(f"Testing {args.caffemodel} on {imdb.name}; output in {output_dir}")
    check_ranks_agree({**file_items({"--def": prototxt, "--net": args.caffemodel}),
                       "test images": image_list_digest(imdb.image_index)}, "test")
    test_net(net, imdb, cfg, output_dir, max_per_image=args.max_per_image, vis=args.vis)
    return 0


if __name__ == "__main__":
    run_tool(main, distributed=True)
