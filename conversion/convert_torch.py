"""Maintainer wrapper, same as ``r21d-zoo convert FILE.pth --model NAME -o DIR [--verify]``:

    python conversion/convert_torch.py --pth r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth \
        --model r2plus1d_34.ig65m_32f --out converted/r2plus1d_34.ig65m_32f --verify
"""

import sys

from r21d_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *[a for a in sys.argv[1:] if a != "--pth"]]))
