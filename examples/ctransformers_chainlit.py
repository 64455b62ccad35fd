# Seed 002's Chainlit + LangChain + CTransformers app, as its tutorial assembles it, on Hearth: only the
# import lines differ, and the model path names the catalog's default model (SmolLM2-135M-Instruct, a
# llama-architecture GGUF, which model_type="mistral" accepts as ctransformers did Mistral's files).
# Run it with `chainlit run examples/ctransformers_chainlit.py -w`. `lib="avx2"` asks for llama.cpp's
# AVX2 build: start it with LLAMA_CPP_LIB_PATH=<that build's lib folder> (`make kernel-test ISA=avx2`
# unpacks one into .venv/kernel-libs/), or `make install ISA=avx2`.
import os
import chainlit as cl
from chainlit.input_widget import Slider, Switch
from langchain_classic.chains import LLMChain
from llm.ctransformers import CTransformers
from langchain_core.prompts import PromptTemplate

local_llm = "default" # the catalog's default model (the tutorial downloads mistral-7b-instruct-v0.1.Q4_K_S.gguf)

config = {
    'max_new_tokens': 128,
    'repetition_penalty': 1.1,
    'temperature': 0.5,
    'top_p': 0.9,
    'top_k': 50,
    'stream': True,
    'threads': int(os.cpu_count() / 2),
}


@cl.on_chat_start
async def start():
    settings = await cl.ChatSettings(
        [
            Slider(
                id="Temperature",
                label="Temperature",
                initial=config['temperature'],
                min=0,
                max=2,
                step=0.1,
            ),
            Slider(
                id="Repetition Penalty",
                label="Repetition Penalty",
                initial=config['repetition_penalty'],
                min=0,
                max=2,
                step=0.1,
            ),
            Slider(
                id="Top P",
                label="Top P",
                initial=config['top_p'],
                min=0,
                max=1,
                step=0.1,
            ),
            Slider(
                id="Top K",
                label="Top K",
                initial=config['top_k'],
                min=0,
                max=100,
                step=1,
            ),
            Slider(
                id="Max New Tokens",
                label="Max New Tokens",
                initial=config['max_new_tokens'],
                min=0,
                max=1024,
                step=1,
            ),
            Switch(id="Streaming", label="Stream Tokens", initial=True),
        ]
    ).send()

    # calling the setup_agent function
    await setup_agent(settings)


@cl.on_settings_update
async def setup_agent(settings):
    # update the config dictionary with the new settings
    config['temperature'] = settings['Temperature']
    config['repetition_penalty'] = settings['Repetition Penalty']
    config['top_p'] = settings['Top P']
    config['top_k'] = settings['Top K']
    config['max_new_tokens'] = settings['Max New Tokens']
    config['stream'] = settings['Streaming']

    # update the model with the new settings
    llm_init = CTransformers(
        model=local_llm,
        model_type="mistral",
        lib="avx2",  # 'avx2' or 'avx512'
        **config
    )

    # creating the prompt template
    template = """
    Question: {question}
    Answer:
    """

    prompt = PromptTemplate(template=template, input_variables=['question'])

    # creating the llm chain
    llm_chain = LLMChain(prompt=prompt, llm=llm_init, verbose=False)

    # saving the llm chain in the session
    cl.user_session.set('llm_chain', llm_chain)


@cl.on_message
async def main(message):
    # getting the llm chain from the session
    llm_chain = cl.user_session.get('llm_chain')

    # generating the response
    result = await llm_chain.acall(message.content, callbacks=[cl.AsyncLangchainCallbackHandler()])

    # sending the response
    await cl.Message(content=result["text"]).send()
