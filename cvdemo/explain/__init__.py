"""Why a model decided and whether it should have: novelty, Grad-CAM, occlusion, feature maps,
robustness probes and the input's place among the validation images. Plain numpy and Keras;
never imports Gradio."""
