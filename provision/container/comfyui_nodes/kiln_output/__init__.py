"""A ComfyUI output node for serving: encode the image once, send the bytes to the client that queued the
prompt over its websocket, and keep the same bytes in the output folder, so a client reading /history and
/view gets the file as before.

SaveImage converts the image on the CPU in float32 and writes a PNG at compression level 4 with the whole
prompt as metadata; on a 1024x1024 image that is a large share of a sub-second request. This node moves
the image to 8 bits on its own device, encodes it in the format the image spec chose, and skips the
metadata. The websocket message follows ComfyUI's binary framing: a 4-byte big-endian event type
(1, the preview-image event) then a 4-byte image type (1 JPEG, 2 PNG as ComfyUI uses them; 3 WebP, which
only kiln's clients read) and the encoded file. The file is written before the bytes are sent, so a client
that asks /view on receiving them finds it whole. Previews share event 1, so an image that sends these
bytes runs with previews off (kiln's images pass --preview-method none); a frame is as large as the file
(about 3 MB for 1024x1024 at PNG level 0), more than some websocket clients accept by default (Python's
websockets: 1 MiB).

File names carry a token drawn when the server process starts: the output folder is a tmpfs that a restart
empties, and ComfyUI's counter would then start again at 1, so a client holding a /view name from before
the restart would be served another prompt's image.
"""

import io
import os
import secrets
import struct
import time

FORMATS = {"png": (2, "PNG", "png"), "jpeg": (1, "JPEG", "jpg"), "webp": (3, "WEBP", "webp")}
PREVIEW_IMAGE_EVENT = 1
RUN = secrets.token_hex(4)   # this server process's part of every file name


def encode(array, fmt: str, quality: int, png_level: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    picture = Image.fromarray(array)
    if fmt == "png":
        picture.save(out, format="PNG", compress_level=png_level)
    elif fmt == "jpeg":
        picture.save(out, format="JPEG", quality=quality)
    else:
        picture.save(out, format="WEBP", quality=quality, method=0)
    return out.getvalue()


def to_uint8(images):
    """[B, H, W, C] floats in 0..1 to uint8 on the tensor's own device, then to host memory."""
    import torch

    return (images * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


class KilnImageOut:
    CATEGORY = "kiln"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "send"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE",),
            "format": (sorted(FORMATS), {"default": "png"}),
            "quality": ("INT", {"default": 95, "min": 1, "max": 100}),
            "png_level": ("INT", {"default": 1, "min": 0, "max": 9}),
            "filename_prefix": ("STRING", {"default": "kiln"}),
        }}

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        """Never taken from ComfyUI's cache: a cached output node would send no bytes to the new client."""
        return float("nan")

    def send(self, images, format, quality, png_level, filename_prefix):
        import folder_paths
        import server

        started = time.monotonic()
        type_id, _, extension = FORMATS[format]
        pixels = to_uint8(images)
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            f"{filename_prefix}_{RUN}", folder_paths.get_output_directory(), pixels.shape[2], pixels.shape[1])
        prompt_server = server.PromptServer.instance
        results = []
        for array in pixels:
            data = encode(array, format, quality, png_level)
            file = f"{name}_{counter:05}_.{extension}"
            with open(os.path.join(folder, file), "wb") as handle:
                handle.write(data)
            if prompt_server.client_id is not None:
                prompt_server.send_sync(PREVIEW_IMAGE_EVENT, struct.pack(">I", type_id) + data, prompt_server.client_id)
            results.append({"filename": file, "subfolder": subfolder, "type": "output", "bytes": len(data)})
            counter += 1
        return {"ui": {"images": results, "kiln_output": [{"format": format,
                                                           "seconds": round(time.monotonic() - started, 4)}]}}


NODE_CLASS_MAPPINGS = {"KilnImageOut": KilnImageOut}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnImageOut": "kiln image out (websocket + file)"}
